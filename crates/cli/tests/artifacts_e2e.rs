//! End-to-end: Azure ML's working-directory conventions. `./outputs` and `./logs` exist before
//! the command starts, what the job writes there is kept, and `job download` lays it out as Azure
//! does.

#![allow(clippy::unwrap_used)]

mod support;

use support::{Server, text, write};

#[test]
fn outputs_and_logs_are_kept_and_downloaded_in_azures_layout() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    // No mkdir: the folders must already be there, as on Azure ML.
    write(
        dir.path(),
        "src/train.sh",
        "test -d outputs && test -d logs || exit 3\necho '{\"acc\": 0.9}' > outputs/metrics.json\nmkdir -p outputs/model && echo w > outputs/model/weights.txt\necho step1 > logs/train.log\necho model > ${1}/model.txt\n",
    );
    write(
        dir.path(),
        "job.yml",
        "$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json\ncode: src\ncommand: sh train.sh ${{outputs.model_out}}\noutputs:\n  model_out:\n    type: uri_folder\n",
    );
    s.ok_in(
        dir.path(),
        &[
            "job", "create", "--file", "job.yml", "--name", "arts", "--stream",
        ],
    );

    let dest = tempfile::tempdir().unwrap();
    let out = s.ok_in(
        dir.path(),
        &[
            "job",
            "download",
            "--name",
            "arts",
            "--all",
            "--download-path",
            &dest.path().to_string_lossy(),
        ],
    );
    assert!(
        text(&out.stderr).contains("Downloaded 5 file(s)"),
        "{}",
        text(&out.stderr)
    );
    let read = |rel: &str| {
        std::fs::read_to_string(dest.path().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    };
    assert_eq!(
        read("artifacts/outputs/metrics.json").trim(),
        "{\"acc\": 0.9}"
    );
    assert_eq!(read("artifacts/outputs/model/weights.txt").trim(), "w");
    assert_eq!(read("artifacts/logs/train.log").trim(), "step1");
    assert!(read("artifacts/user_logs/std_log.txt").contains("exited with code 0"));
    assert_eq!(read("named-outputs/model_out/model.txt").trim(), "model");
}

#[test]
fn the_default_output_is_the_artifacts_and_nothing_else_of_the_working_directory() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "src/secret.txt", "code, not an artifact\n");
    write(
        dir.path(),
        "job.yml",
        "code: src\ncommand: echo kept > outputs/a.txt\n",
    );
    s.ok_in(
        dir.path(),
        &[
            "job", "create", "--file", "job.yml", "--name", "def", "--stream",
        ],
    );
    let dest = tempfile::tempdir().unwrap();
    s.ok_in(
        dir.path(),
        &[
            "job",
            "download",
            "--name",
            "def",
            "--output-name",
            "default",
            "--download-path",
            &dest.path().to_string_lossy(),
        ],
    );
    assert!(dest.path().join("artifacts/outputs/a.txt").is_file());
    assert!(!dest.path().join("artifacts/secret.txt").exists());
}
