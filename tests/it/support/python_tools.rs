//! Python tools from PyPI that some tests run (`openapi-spec-validator`, `schemathesis`): found,
//! else installed with `python3 -m pip install`, else the test fails saying how to install them.
//! Never skipped: a test that cannot run its tool has not passed.

use std::process::Command;

/// Makes sure `module` can be imported by `python3`, installing `package` if it cannot.
pub fn require(module: &str, package: &str) {
    if importable(module) {
        return;
    }
    let install = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", package])
        .output();
    let detail = match &install {
        Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
        Err(error) => error.to_string(),
    };
    assert!(
        importable(module),
        "this test needs the PyPI package `{package}` (python module `{module}`) and could not \
         install it: {detail}\nInstall it with `python3 -m pip install {package}` and run again."
    );
}

fn importable(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|output| output.status.success())
}
