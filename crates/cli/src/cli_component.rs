//! `berth component ...` flags: registering and reading component versions.

use std::path::PathBuf;

use clap::Subcommand;

use crate::cli::AssetShowArgs;

/// `berth component ...`
#[derive(Debug, Subcommand)]
pub enum ComponentCommand {
    /// Register a component version from Azure ML's commandComponent or pipelineComponent YAML
    /// (name, version, inputs, outputs, command, code, environment). Its code is copied, and
    /// the version never changes.
    Create {
        /// The component file.
        #[arg(short, long)]
        file: PathBuf,
        /// Name (default: the file's).
        #[arg(short, long)]
        name: Option<String>,
        /// Version (default: the file's, else one more than the latest number).
        #[arg(short, long)]
        version: Option<String>,
        /// Override a field: --set display_name=... (repeatable).
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
    },
    /// List component versions.
    List {
        /// Only this component's versions.
        #[arg(short, long)]
        name: Option<String>,
    },
    /// Show a component version (the latest unless --version is given).
    Show(AssetShowArgs),
}
