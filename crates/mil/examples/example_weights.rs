//! Writes the BLOBFILE of `examples/mil/swiglu_block.mil`: three fp16 records (gate, up, down)
//! with deterministic values. Usage: `cargo run -p anetrain-mil --example example_weights -- OUT.bin`.

use anetrain_mil::blob::BlobWriter;

fn main() -> std::io::Result<()> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "examples/mil/weights/ffn.bin".to_string());
    let values = |n: usize, phase: f32| -> Vec<f32> {
        (0..n)
            .map(|i| 0.125 * (i as f32 * 0.37 + phase).sin())
            .collect()
    };
    let mut writer = BlobWriter::new();
    let offsets = [
        writer.add_fp16(&values(256 * 128, 0.0)),
        writer.add_fp16(&values(256 * 128, 1.0)),
        writer.add_fp16(&values(128 * 256, 2.0)),
    ];
    std::fs::write(&out, writer.finish())?;
    println!("wrote {out}: records at offsets {offsets:?}");
    Ok(())
}
