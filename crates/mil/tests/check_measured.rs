//! Measured rule applicability (`anetrain doctor --probe`) overriding the catalog in the
//! checker: an `Unknown` finding becomes a violation when a probe showed the rule holds, and
//! disappears when a probe showed it does not.

use anetrain_mil::check::{check_with, rule, Applies, MeasuredRules};
use anetrain_mil::{check, Builder, Chip, ConvOptions, DType, Program, Report};

/// `y = gelu(conv(x))` on `[1, 64, 1, 768]` (96 KiB ports, width a multiple of 32, anchored by
/// a conv), so the only finding is the disputed `gelu` rule.
fn gelu_program() -> Program {
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, 64, 1, 768]).unwrap();
    let identity: Vec<f32> = (0..64 * 64)
        .map(|i| if i / 64 == i % 64 { 1.0 } else { 0.0 })
        .collect();
    let w = b
        .weight("w", DType::Fp16, [64, 64, 1, 1], &identity)
        .unwrap();
    let h = b.conv(x, w, &ConvOptions::default()).unwrap();
    let y = b.gelu(h, "EXACT").unwrap();
    b.output(y, "y").unwrap();
    b.finish().unwrap().program
}

fn rule_ids(list: &[anetrain_mil::Violation]) -> Vec<&'static str> {
    list.iter().map(|v| v.rule).collect()
}

fn measured(chip: Chip, rule_id: &str, holds: bool) -> MeasuredRules {
    let mut m = MeasuredRules::new(chip);
    m.observe(rule_id, holds).unwrap();
    m
}

#[test]
fn the_catalog_alone_reports_gelu_as_unknown_on_every_chip() {
    for chip in Chip::ALL {
        let report = check(&gelu_program(), chip);
        assert_eq!(rule_ids(&report.unknown), ["gelu"], "{chip}");
        assert!(report.violations.is_empty(), "{chip}: {report}");
    }
}

#[test]
fn a_failing_probe_turns_the_unknown_finding_into_a_violation() {
    let report = check_with(&gelu_program(), Chip::M4, &measured(Chip::M4, "gelu", true));
    assert_eq!(rule_ids(&report.violations), ["gelu"]);
    assert!(report.unknown.is_empty());
    assert!(!report.is_clean());
    assert_eq!(report.violations[0].fix, rule("gelu").unwrap().fix);
}

#[test]
fn a_passing_probe_makes_the_unknown_finding_disappear() {
    let report = check_with(
        &gelu_program(),
        Chip::M4,
        &measured(Chip::M4, "gelu", false),
    );
    assert_eq!(
        report,
        Report {
            chip: Chip::M4,
            violations: vec![],
            unknown: vec![],
            warnings: vec![],
        }
    );
}

#[test]
fn measurements_from_another_chip_leave_the_catalog_in_charge() {
    let report = check_with(&gelu_program(), Chip::M5, &measured(Chip::M4, "gelu", true));
    assert_eq!(report, check(&gelu_program(), Chip::M5));
}

#[test]
fn no_measurements_give_the_same_report_as_check() {
    for chip in Chip::ALL {
        let program = gelu_program();
        assert_eq!(
            check_with(&program, chip, &MeasuredRules::new(chip)),
            check(&program, chip)
        );
    }
}

#[test]
fn a_measurement_also_overrides_a_rule_the_catalog_says_holds() {
    // Without a conv, matmul or linear the program breaks `no-anchor`, which the catalog
    // applies to every chip; a probe that ran such a program on this chip refutes it here.
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, 64, 1, 768]).unwrap();
    let y = b.relu(x).unwrap();
    b.output(y, "y").unwrap();
    let program = b.finish().unwrap().program;
    assert_eq!(
        rule_ids(&check(&program, Chip::M4).violations),
        ["no-anchor"]
    );
    let report = check_with(&program, Chip::M4, &measured(Chip::M4, "no-anchor", false));
    assert!(report.is_clean(), "{report}");
    assert!(report.unknown.is_empty() && report.warnings.is_empty());
}

#[test]
fn one_failing_probe_outweighs_passing_ones_in_any_order() {
    for order in [[false, true], [true, false]] {
        let mut m = MeasuredRules::new(Chip::M4);
        for holds in order {
            m.observe("io-width-multiple-of-32", holds).unwrap();
        }
        assert_eq!(m.get("io-width-multiple-of-32"), Some(Applies::Yes));
    }
    let mut m = MeasuredRules::new(Chip::M4);
    m.observe("concat", false).unwrap();
    m.observe("concat", false).unwrap();
    assert_eq!(m.get("concat"), Some(Applies::No));
    assert_eq!(m.get("gelu"), None);
    assert_eq!(m.iter().collect::<Vec<_>>(), [("concat", Applies::No)]);
}

#[test]
fn an_unknown_rule_id_is_refused_with_a_fix() {
    let mut m = MeasuredRules::new(Chip::M4);
    let e = m.observe("gelu-v2", true).unwrap_err().to_string();
    assert!(
        e.contains("`gelu-v2`") && e.contains("anetrain doctor --probe"),
        "{e}"
    );
    assert!(m.is_empty());
}
