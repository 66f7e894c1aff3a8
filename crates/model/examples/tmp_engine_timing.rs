use anetrain_device::CpuDevice;
use anetrain_model::config::ModelConfig;
use anetrain_model::engine::{DeviceEngine, Engine, ReferenceEngine};
use anetrain_model::params::Params;
use std::time::Instant;
fn main() {
    let c = ModelConfig::preset("stories15M").unwrap();
    let s = 256;
    let p = Params::init(&c, 1).unwrap();
    let rows: Vec<Vec<u32>> = vec![(0..=s as u32).map(|t| (t * 31 + 7) % 32000).collect()];
    let t0 = Instant::now();
    let mut e = DeviceEngine::new(&c, Box::new(CpuDevice::default()), s).unwrap();
    println!("new {:?}", t0.elapsed());
    let t0 = Instant::now();
    e.stage(&p).unwrap();
    println!("stage {:?}", t0.elapsed());
    let mut g = Params::zeros(&c);
    for _ in 0..3 {
        let t0 = Instant::now();
        let st = e.forward_backward(&p, &rows, 1.0, &mut g).unwrap();
        println!("fb {:?} loss {}", t0.elapsed(), st.loss);
    }
    let t0 = Instant::now();
    e.loss(&p, &rows).unwrap();
    println!("loss {:?}", t0.elapsed());
    let mut g2 = Params::zeros(&c);
    let t0 = Instant::now();
    ReferenceEngine::new(&c).forward_backward(&p, &rows, 1.0, &mut g2).unwrap();
    println!("reference fb {:?}", t0.elapsed());
}
