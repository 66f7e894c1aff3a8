//! Loading `AppleNeuralEngine.framework` and resolving its classes (ane-reference §1.1, §1.2).
//!
//! Nothing is linked: the framework is `dlopen`ed and its classes are looked up by name, and
//! every selector the device calls is checked here, so a macOS release that renames one gives
//! an error naming it instead of an Objective-C exception (which would abort the process).

use crate::ane::info::AneInfo;
use crate::{DeviceError, Result};
use objc2::rc::{autoreleasepool, Retained};
use objc2::runtime::{AnyClass, AnyObject, Bool, MessageReceiver, Sel};
use objc2::{msg_send, sel};
use objc2_foundation::{NSProcessInfo, NSString};
use std::ffi::CStr;
use std::sync::OnceLock;

const FRAMEWORK: &CStr =
    c"/System/Library/PrivateFrameworks/AppleNeuralEngine.framework/AppleNeuralEngine";

/// The framework, loaded, with the classes the device uses.
#[derive(Clone, Debug)]
pub struct AneRuntime {
    pub(super) descriptor: &'static AnyClass,
    pub(super) model: &'static AnyClass,
    pub(super) request: &'static AnyClass,
    pub(super) surface_object: &'static AnyClass,
    client: Option<&'static AnyClass>,
    device_info: Option<&'static AnyClass>,
    performance_stats: Option<&'static AnyClass>,
    macos: String,
}

/// The `dlopen` outcome, shared by every load in the process. The handle is never closed:
/// Objective-C classes a framework registers cannot be unloaded.
static FRAMEWORK_OPENED: OnceLock<std::result::Result<(), String>> = OnceLock::new();

impl AneRuntime {
    /// Opens the framework and resolves the four required classes (`_ANEInMemoryModelDescriptor`,
    /// `_ANEInMemoryModel`, `_ANERequest`, `_ANEIOSurfaceObject`) and the optional ones.
    pub fn load() -> Result<AneRuntime> {
        autoreleasepool(|_| {
            let macos = macos_version();
            open_framework().map_err(|e| {
                DeviceError::Unavailable(format!(
                    "cannot load AppleNeuralEngine.framework on macOS `{macos}`: {e}; \
                     use --device cpu"
                ))
            })?;
            let required = |name: &CStr| {
                AnyClass::get(name).ok_or_else(|| {
                    DeviceError::Unavailable(format!(
                        "AppleNeuralEngine.framework on macOS `{macos}` has no class `{}`; this \
                         release changed the private API, use --device cpu",
                        name.to_string_lossy()
                    ))
                })
            };
            let runtime = AneRuntime {
                descriptor: required(c"_ANEInMemoryModelDescriptor")?,
                model: required(c"_ANEInMemoryModel")?,
                request: required(c"_ANERequest")?,
                surface_object: required(c"_ANEIOSurfaceObject")?,
                client: AnyClass::get(c"_ANEClient"),
                device_info: AnyClass::get(c"_ANEDeviceInfo"),
                performance_stats: AnyClass::get(c"_ANEPerformanceStats"),
                macos: macos.clone(),
            };
            runtime.check_selectors()?;
            Ok(runtime)
        })
    }

    /// The macOS version string, for messages and capability files.
    pub fn macos(&self) -> &str {
        &self.macos
    }

    /// What `_ANEDeviceInfo` reports, each answer read only if the class has the selector.
    pub fn info(&self) -> AneInfo {
        let ask = |name: &CStr| self.device_info.and_then(|cls| class_answer(cls, name));
        let text = |name: &CStr| ask(name).map(|a| a.text());
        AneInfo {
            macos: self.macos.clone(),
            has_ane: ask(c"hasANE").and_then(|a| a.number()).map(|n| n != 0),
            sub_type: text(c"aneSubType"),
            architecture: text(c"aneArchitectureType"),
            cores: ask(c"numANECores")
                .and_then(|a| a.number())
                .and_then(|n| u64::try_from(n).ok()),
            product: text(c"productName"),
            has_client: self.client.is_some(),
            has_performance_stats: self.performance_stats.is_some(),
        }
    }

    /// Fails naming the first selector the device needs that this framework lacks.
    fn check_selectors(&self) -> Result<()> {
        let class_methods = [
            (
                self.descriptor,
                sel!(modelWithMILText:weights:optionsPlist:),
            ),
            (self.model, sel!(inMemoryModelWithDescriptor:)),
            (
                self.request,
                sel!(requestWithInputs:inputIndices:outputs:outputIndices:weightsBuffer:perfStats:procedureIndex:),
            ),
            (self.surface_object, sel!(objectWithIOSurface:)),
        ];
        let instance_methods = [
            (self.model, sel!(hexStringIdentifier)),
            (self.model, sel!(compileWithQoS:options:error:)),
            (self.model, sel!(loadWithQoS:options:error:)),
            (self.model, sel!(evaluateWithQoS:options:request:error:)),
            (self.model, sel!(unloadWithQoS:error:)),
        ];
        let missing = |cls: &AnyClass, sel: Sel, kind: char| {
            DeviceError::Unavailable(format!(
                "AppleNeuralEngine.framework on macOS `{}` has no method {kind}[{} {}]; this \
                 release changed the private API, use --device cpu",
                self.macos,
                cls.name().to_string_lossy(),
                sel.name().to_string_lossy()
            ))
        };
        for (cls, sel) in class_methods {
            if !cls.metaclass().responds_to(sel) {
                return Err(missing(cls, sel, '+'));
            }
        }
        for (cls, sel) in instance_methods {
            if !cls.responds_to(sel) {
                return Err(missing(cls, sel, '-'));
            }
        }
        Ok(())
    }
}

fn open_framework() -> std::result::Result<(), String> {
    FRAMEWORK_OPENED
        .get_or_init(|| {
            // SAFETY: a valid NUL-terminated path; dlopen has no other preconditions.
            let handle = unsafe { libc::dlopen(FRAMEWORK.as_ptr(), libc::RTLD_NOW) };
            if !handle.is_null() {
                return Ok(());
            }
            // SAFETY: dlerror returns NULL or a NUL-terminated string valid until the next
            // dl* call on this thread; it is copied at once.
            let message = unsafe { libc::dlerror() };
            Err(if message.is_null() {
                "dlopen failed without a message".to_string()
            } else {
                // SAFETY: non-null, NUL-terminated (see above).
                unsafe { CStr::from_ptr(message) }
                    .to_string_lossy()
                    .into_owned()
            })
        })
        .clone()
}

fn macos_version() -> String {
    NSProcessInfo::processInfo()
        .operatingSystemVersionString()
        .to_string()
}

/// A class method's result, read according to its declared return type.
enum Answer {
    Number(i64),
    Text(String),
}

impl Answer {
    fn number(&self) -> Option<i64> {
        match self {
            Answer::Number(n) => Some(*n),
            Answer::Text(t) => t.trim().parse().ok(),
        }
    }

    fn text(&self) -> String {
        match self {
            Answer::Number(n) => n.to_string(),
            Answer::Text(t) => t.clone(),
        }
    }
}

/// Calls the argument-less class method `name` of `cls` if it exists, choosing the Rust return
/// type from the method's own type encoding (these informational selectors are undocumented
/// and their types vary: BOOL, integers or objects).
fn class_answer(cls: &'static AnyClass, name: &CStr) -> Option<Answer> {
    let sel = Sel::register(name);
    let method = cls.class_method(sel)?;
    let encoding = method.return_type();
    let code = encoding.to_bytes().first().copied()?;
    // SAFETY: the method exists on the class, takes no arguments, and each arm's return type
    // is the one its encoding letter denotes on arm64.
    unsafe {
        match code {
            b'B' => Some(Answer::Number(i64::from(
                cls.send_message::<(), Bool>(sel, ()).as_bool(),
            ))),
            b'c' => Some(Answer::Number(i64::from(
                cls.send_message::<(), i8>(sel, ()),
            ))),
            b'C' => Some(Answer::Number(i64::from(
                cls.send_message::<(), u8>(sel, ()),
            ))),
            b'i' => Some(Answer::Number(i64::from(
                cls.send_message::<(), i32>(sel, ()),
            ))),
            b'I' => Some(Answer::Number(i64::from(
                cls.send_message::<(), u32>(sel, ()),
            ))),
            b'q' => Some(Answer::Number(cls.send_message::<(), i64>(sel, ()))),
            b'Q' => i64::try_from(cls.send_message::<(), u64>(sel, ()))
                .ok()
                .map(Answer::Number),
            b'@' => {
                let object: *mut AnyObject = cls.send_message(sel, ());
                let object = Retained::retain_autoreleased(object)?;
                let description: Retained<NSString> = msg_send![&*object, description];
                Some(Answer::Text(description.to_string()))
            }
            _ => None,
        }
    }
}
