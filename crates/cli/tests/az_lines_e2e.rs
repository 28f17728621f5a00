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

#[test]
fn endpoint_and_deployment_names_and_fields_come_from_flags() {
    let s = Server::start(&[]);
    support::serving::prepare(&s);
    let seed = seed_dir();
    let ep = s.ok_in(
        &seed,
        &az(&[
            "online-endpoint",
            "create",
            "--name",
            "flags-ep",
            "--file",
            "endpoint.yaml",
            "--set",
            "tags.team=ml",
            "-o",
            "json",
        ]),
    );
    let ep: serde_json::Value = serde_json::from_slice(&ep.stdout).unwrap();
    assert_eq!(
        (ep["name"].as_str(), ep["tags"]["team"].as_str()),
        (Some("flags-ep"), Some("ml"))
    );
    s.ok_in(
        &seed,
        &az(&[
            "online-deployment",
            "create",
            "--name",
            "green",
            "--endpoint-name",
            "flags-ep",
            "--file",
            "deployment.yaml",
            "--all-traffic",
            "--set",
            "instance_count=1",
        ]),
    );
    let show = |s: &Server| {
        s.json(&[
            "online-deployment",
            "show",
            "--name",
            "green",
            "-e",
            "flags-ep",
        ])
    };
    assert_eq!(show(&s)["instance_count"], 1);
    // An update with only --set starts from the current revision's file and code.
    s.ok_in(
        &seed,
        &az(&[
            "online-deployment",
            "update",
            "--name",
            "green",
            "-e",
            "flags-ep",
            "--set",
            "instance_count=2",
        ]),
    );
    let green = show(&s);
    assert_eq!(
        (
            green["instance_count"].as_i64(),
            green["ready_replicas"].as_i64()
        ),
        (Some(2), Some(2))
    );
    let bad = s.cli_in(
        &seed,
        &[
            "online-deployment",
            "update",
            "--name",
            "green",
            "-e",
            "flags-ep",
            "--set",
            "replicas=3",
        ],
    );
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("unknown field `replicas`"),
        "{}",
        text(&bad.stderr)
    );
}
