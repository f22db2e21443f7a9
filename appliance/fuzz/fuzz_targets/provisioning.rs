//! The provisioning file as first boot reads it: TOML, every field's
//! check, and the report of problems with their lines.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    // Relative paths resolve under a folder that does not exist: no file
    // outside the input is read.
    let base = Path::new("/nonexistent/archipel-fuzz");
    if let Err(problems) =
        archipel_provisioning::check_str(text, Path::new("provisioning.toml"), base)
    {
        let report = problems.to_string();
        assert!(!report.is_empty());
        for problem in &problems.problems {
            if let Some(line) = problem.line {
                assert!(
                    line >= 1 && line <= text.lines().count().max(1) + 1,
                    "{report}"
                );
            }
        }
    }
});
