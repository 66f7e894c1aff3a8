//! Feeds arbitrary UTF-8 to the MIL parser: it must return `Ok` or `Err`, never panic, and
//! whatever it accepts must print to text that parses back to the same text.

#![no_main]

use anetrain_mil::{parse_program, print_program};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(program) = parse_program(text) {
        let printed = print_program(&program);
        match parse_program(&printed) {
            Ok(again) => assert_eq!(print_program(&again), printed),
            Err(e) => panic!("printed program does not parse: {e}\n{printed}"),
        }
    }
});
