//! One compiled and loaded `_ANEInMemoryModel` and its model directory (ane-reference §1.3):
//! descriptor, model, directory, compile, load, evaluate, unload.

use super::runtime::AneRuntime;
use crate::ane::attributes::{AttrValue, ModelPorts};
use crate::ane::budget::CompileBudget;
use crate::ane::weights_dict::{model_dir_files, weight_entries, ModelDir, WeightEntry};
use crate::{DeviceError, Result};
use anetrain_mil::WeightFiles;
use objc2::rc::{autoreleasepool, Retained};
use objc2::runtime::AnyObject;
use objc2::{msg_send, sel};
use objc2_foundation::{
    ns_string, NSArray, NSData, NSDictionary, NSError, NSNumber, NSString, NSTemporaryDirectory,
    NSUnderlyingErrorKey,
};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// `QOS_CLASS_DEFAULT`, what every project passes (§1.5).
const QOS: u32 = 21;

/// MX's bridge waits this long and retries once when a load fails, to let the ANE free a slot.
const LOAD_RETRY_DELAY: Duration = Duration::from_millis(100);

/// A loaded model. Dropping it unloads the model, then releases it, then deletes its directory.
#[derive(Debug)]
pub(super) struct CompiledModel {
    model: Retained<AnyObject>,
    ports: Option<ModelPorts>,
    /// Evaluations on one model are serialised: whether the framework allows several in
    /// flight through `evaluateWithQoS` is unknown (§10 question 12).
    eval_lock: Mutex<()>,
    /// The MIL and weight data are kept for the model's lifetime, as AB does, in case the
    /// framework reads them lazily.
    _mil: Retained<NSData>,
    _weights: Retained<NSDictionary<NSString, AnyObject>>,
    _dir: ModelDir,
}

// SAFETY: the framework objects are only messaged through `&self` methods that serialise
// evaluation (`eval_lock`) and through `Drop`, which has exclusive access; `aned` requests are
// not tied to the creating thread (AB drives them from worker threads).
unsafe impl Send for CompiledModel {}
// SAFETY: see `Send`; the only shared-reference operations are `evaluate` (locked) and reading
// the immutable schema.
unsafe impl Sync for CompiledModel {}

impl CompiledModel {
    /// Compiles (unless `aned` already has this exact program) and loads `mil` with `weights`,
    /// charging each compile to `budget`.
    pub(super) fn build(
        runtime: &AneRuntime,
        mil: &str,
        weights: &WeightFiles,
        budget: &CompileBudget,
    ) -> Result<CompiledModel> {
        autoreleasepool(|_| {
            let entries = weight_entries(weights)?;
            let files = model_dir_files(mil, weights)?;
            let weights_dict = weights_dictionary(&entries);
            let mil_data = NSData::with_bytes(mil.as_bytes());

            // SAFETY: selector checked at load; MIL as NSData, a non-nil weights dictionary and
            // nil options, as §1.3 requires.
            let descriptor: Option<Retained<AnyObject>> = unsafe {
                msg_send![
                    runtime.descriptor,
                    modelWithMILText: &*mil_data,
                    weights: &*weights_dict,
                    optionsPlist: None::<&AnyObject>
                ]
            };
            let descriptor = descriptor.ok_or_else(|| {
                DeviceError::Runtime(
                    "the ANE framework refused the MIL text or its weights dictionary (the model \
                     descriptor is nil)"
                        .into(),
                )
            })?;
            // SAFETY: selector checked at load; the argument is the descriptor just made.
            let model: Option<Retained<AnyObject>> =
                unsafe { msg_send![runtime.model, inMemoryModelWithDescriptor: &*descriptor] };
            let model = model.ok_or_else(|| {
                DeviceError::Runtime("the ANE framework returned no in-memory model".into())
            })?;

            let dir = ModelDir::create(model_dir_path(&model)?, &files)?;
            let cached = compiled_model_exists(&model);
            let mut compiled = false;
            if !cached {
                compile(&model, budget)?;
                compiled = true;
            }
            if let Err(first) = load(&model) {
                std::thread::sleep(LOAD_RETRY_DELAY);
                if !compiled {
                    // The `aned` cache entry was stale or unusable: compile after all.
                    compile(&model, budget)?;
                }
                load(&model).map_err(|second| {
                    DeviceError::Runtime(format!("{first}; retried: {second}"))
                })?;
            }
            let ports = read_attributes(&model).as_ref().and_then(ModelPorts::parse);
            Ok(CompiledModel {
                model,
                ports,
                eval_lock: Mutex::new(()),
                _mil: mil_data,
                _weights: weights_dict,
                _dir: dir,
            })
        })
    }

    /// What the loaded model reports about its ports, when the framework exposes it.
    pub(super) fn ports(&self) -> Option<&ModelPorts> {
        self.ports.as_ref()
    }

    /// Runs `request` synchronously; the outputs are in its surfaces when this returns.
    pub(super) fn evaluate(&self, request: &AnyObject) -> Result<()> {
        // The lock guards no data, so a panic elsewhere leaves nothing inconsistent.
        let _guard = self
            .eval_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        autoreleasepool(|_| {
            let options = NSDictionary::<NSString, AnyObject>::new();
            // SAFETY: selector checked at load; u32 QoS, empty options, a request built for
            // this model, NSError out-parameter.
            let result: std::result::Result<(), Retained<NSError>> = unsafe {
                msg_send![
                    &*self.model,
                    evaluateWithQoS: QOS,
                    options: &*options,
                    request: request,
                    error: _
                ]
            };
            result.map_err(|e| framework_error("evaluate", &e))
        })
    }
}

impl Drop for CompiledModel {
    fn drop(&mut self) {
        autoreleasepool(|_| {
            // SAFETY: selector checked at load; a `CompiledModel` exists only once loaded
            // (unloading a never-loaded model fails with a misleading error, §1.3).
            let result: std::result::Result<(), Retained<NSError>> =
                unsafe { msg_send![&*self.model, unloadWithQoS: QOS, error: _] };
            // A destructor cannot report; a failed unload leaks an ANE slot until the process
            // exits, which is all the framework would let us do about it anyway.
            drop(result);
        });
    }
}

/// `{key: {offset: 0, data: <file>}}` for every weight file (§1.4).
fn weights_dictionary(entries: &[WeightEntry<'_>]) -> Retained<NSDictionary<NSString, AnyObject>> {
    let keys: Vec<Retained<NSString>> = entries.iter().map(|e| NSString::from_str(e.key)).collect();
    let values: Vec<Retained<NSDictionary<NSString, AnyObject>>> = entries
        .iter()
        .map(|e| {
            let offset = NSNumber::new_u64(e.offset);
            let data = NSData::with_bytes(e.bytes);
            let objects: [&AnyObject; 2] = [&offset, &data];
            NSDictionary::from_slices(&[ns_string!("offset"), ns_string!("data")], &objects)
        })
        .collect();
    let keys: Vec<&NSString> = keys.iter().map(|k| &**k).collect();
    let values: Vec<&AnyObject> = values.iter().map(|v| -> &AnyObject { v }).collect();
    NSDictionary::from_slices(&keys, &values)
}

/// `NSTemporaryDirectory()/<hexStringIdentifier>`, where the compiler looks for the files.
fn model_dir_path(model: &AnyObject) -> Result<PathBuf> {
    // SAFETY: selector checked at load; returns an NSString or nil.
    let hex: Option<Retained<NSString>> = unsafe { msg_send![model, hexStringIdentifier] };
    let hex = hex.map(|h| h.to_string()).unwrap_or_default();
    // The id becomes a path component, so anything but a plain name is refused.
    if hex.is_empty()
        || !hex
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(DeviceError::Runtime(format!(
            "the ANE framework gave the model the unusable identifier `{hex}`"
        )));
    }
    Ok(PathBuf::from(NSTemporaryDirectory().to_string()).join(hex))
}

/// Whether `aned` already holds this exact program (AB); false when the selector is missing.
fn compiled_model_exists(model: &AnyObject) -> bool {
    if !model.class().responds_to(sel!(compiledModelExists)) {
        return false;
    }
    // SAFETY: the model responds to it; it takes nothing and returns BOOL.
    unsafe { msg_send![model, compiledModelExists] }
}

fn compile(model: &AnyObject, budget: &CompileBudget) -> Result<()> {
    budget.charge()?;
    let options = NSDictionary::<NSString, AnyObject>::new();
    // SAFETY: selector checked at load; u32 QoS, empty options, NSError out-parameter.
    let result: std::result::Result<(), Retained<NSError>> =
        unsafe { msg_send![model, compileWithQoS: QOS, options: &*options, error: _] };
    result.map_err(|e| framework_error("compile", &e))
}

fn load(model: &AnyObject) -> Result<()> {
    let options = NSDictionary::<NSString, AnyObject>::new();
    // SAFETY: as for compile.
    let result: std::result::Result<(), Retained<NSError>> =
        unsafe { msg_send![model, loadWithQoS: QOS, options: &*options, error: _] };
    result.map_err(|e| framework_error("load", &e))
}

/// `modelAttributes` as plain data (§2.5), for [`ModelPorts::parse`]; `None` when the model
/// does not answer it.
fn read_attributes(model: &AnyObject) -> Option<AttrValue> {
    if !model.class().responds_to(sel!(modelAttributes)) {
        return None;
    }
    // SAFETY: the model responds to it; it takes nothing and returns an object or nil.
    let attributes: Option<Retained<AnyObject>> = unsafe { msg_send![model, modelAttributes] };
    let attributes = attributes?;
    Some(plain(&attributes, 0))
}

/// Property lists nest a few levels; anything deeper is not a port description.
const MAX_DEPTH: usize = 8;

/// An Objective-C property-list object as an [`AttrValue`].
fn plain(object: &AnyObject, depth: usize) -> AttrValue {
    if depth > MAX_DEPTH {
        return AttrValue::Other;
    }
    if let Some(s) = object.downcast_ref::<NSString>() {
        return AttrValue::Str(s.to_string());
    }
    if let Some(n) = object.downcast_ref::<NSNumber>() {
        return AttrValue::Int(n.longLongValue());
    }
    if let Some(list) = object.downcast_ref::<NSArray>() {
        let items = (0..list.count()).map(|i| plain(&list.objectAtIndex(i), depth + 1));
        return AttrValue::List(items.collect());
    }
    if let Some(dict) = object.downcast_ref::<NSDictionary>() {
        let (keys, values) = dict.to_vecs();
        let entries = keys
            .iter()
            .zip(&values)
            .filter_map(|(k, v)| {
                let key = k.downcast_ref::<NSString>()?.to_string();
                Some((key, plain(v, depth + 1)))
            })
            .collect();
        return AttrValue::Dict(entries);
    }
    AttrValue::Other
}

/// The framework's own words: the error's description, domain and code, and the underlying
/// error's description, which names the kind (`InvalidMILProgram`, `CompilationFailure`, ...).
fn framework_error(step: &str, error: &NSError) -> DeviceError {
    let mut message = format!(
        "ANE {step} failed: {} ({} {})",
        error.localizedDescription(),
        error.domain(),
        error.code()
    );
    // SAFETY: NSUnderlyingErrorKey is an immutable framework constant.
    let key = unsafe { NSUnderlyingErrorKey };
    let underlying = error
        .userInfo()
        .objectForKey(key)
        .and_then(|u| u.downcast::<NSError>().ok());
    if let Some(underlying) = underlying {
        message.push_str(&format!(
            "; underlying: {} ({} {})",
            underlying.localizedDescription(),
            underlying.domain(),
            underlying.code()
        ));
    }
    DeviceError::Runtime(message)
}
