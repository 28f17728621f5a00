//! End-to-end: the seed's `az ml` lines with `az ml` replaced by `berth`, flags and all:
//! `--resource-group/-g`, `--workspace-name/-w`, `--subscription`, JMESPath `--query`, `-o table`.

#![allow(clippy::unwrap_used)]

mod support;

use support::{Server, seed_dir, text};

const AZ: [&str; 4] = [
    "--resource-group",
    "myMLResourceGroup",
    "--workspace-name",
    "myMLWorkspace",
];

fn az<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.extend(AZ);
    v
}

#[test]
fn the_seeds_compute_lines_work_as_written() {
    let s = Server::start(&[]);
    let seed = seed_dir();
    s.ok_in(
        &seed,
        &az(&[
            "compute",
            "attach",
            "--type",
            "local",
            "--name",
            "aks-compute",
        ]),
    );
    // The seed's query, line breaks and all.
    let query = "{ \\\n    name: name, \\\n    provisioningState: provisioning_state, \\\n    type: type \\\n  }"
        .replace("\\\n", "\n");
    let out = s.ok_in(
        &seed,
        &az(&[
            "compute",
            "show",
            "--name",
            "aks-compute",
            "--query",
            &query,
            "-o",
            "table",
        ]),
    );
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("Name")
            && lines[0].contains("ProvisioningState")
            && lines[0].ends_with("Type"),
        "{table}"
    );
    assert!(lines[1].starts_with("----"), "{table}");
    assert!(
        lines[2].starts_with("aks-compute") && lines[2].contains("Succeeded"),
        "{table}"
    );
}

#[test]
fn the_seeds_job_line_takes_the_workspace_flags_and_short_forms() {
    let s = Server::start(&[]);
    let seed = seed_dir();
    s.ok_in(
        &seed,
        &[
            "instance-type",
            "apply",
            "-f",
            "instance-types.yaml",
            "-g",
            "rg",
            "-w",
            "ws",
            "--subscription",
            "0000",
        ],
    );
    s.ok_in(
        &seed,
        &[
            "datastore",
            "create",
            "--name",
            "mydata",
            "--path",
            "./data",
        ],
    );
    s.ok_in(
        &seed,
        &[
            "compute",
            "attach",
            "--type",
            "local",
            "--name",
            "aks-compute",
        ],
    );
    let out = s.ok_in(
        &seed,
        &az(&[
            "job",
            "create",
            "--file",
            "training-job.yaml",
            "--set",
            "resources.instance_type=cpu-small",
            "--name",
            "azjob",
            "--stream",
        ]),
    );
    assert!(text(&out.stdout).contains("epoch 50/50"));
    let listed = text(
        &s.ok_in(
            &seed,
            &[
                "job",
                "list",
                "--query",
                "[?status=='Completed'].name",
                "-o",
                "tsv",
            ],
        )
        .stdout,
    );
    assert_eq!(listed.trim(), "azjob");
}

#[test]
fn an_invalid_query_is_refused_with_where_it_broke() {
    let s = Server::start(&[]);
    let out = s.cli(&["compute", "show", "--name", "local", "--query", "{name: "]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("is not a valid JMESPath expression"), "{err}");
}
