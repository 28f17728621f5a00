//! Datastores: named places that hold data, addressed as `azureml://datastores/<name>/paths/<p>`.

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::names::validate_name;
use crate::yaml::{Source, SpecError};

/// A validated datastore spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatastoreSpec {
    /// Unique name.
    pub name: String,
    /// Where the data is.
    #[serde(flatten)]
    pub location: DatastoreLocation,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Where a datastore's data is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DatastoreLocation {
    /// A folder on the server's machine.
    Local {
        /// Path as given (made absolute by the client before it is sent).
        path: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatastore {
    #[serde(rename = "$schema")]
    _schema: Option<String>,
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    path: Option<String>,
    description: Option<String>,
}

impl DatastoreSpec {
    /// Parses a datastore YAML file (`type: local` with a `path`).
    pub fn parse(src: &Source<'_>) -> Result<DatastoreSpec, SpecError> {
        let raw: RawDatastore = src.parse()?;
        validate_name("datastore", &raw.name.value).map_err(|m| src.error_at(&raw.name, m))?;
        let location = match raw.kind.value.as_str() {
            "local" => DatastoreLocation::Local {
                path: raw
                    .path
                    .ok_or_else(|| src.error_at(&raw.kind, "a local datastore needs `path`"))?,
            },
            "azure_blob" | "azure_file" | "azure_data_lake_gen1" | "azure_data_lake_gen2" => {
                return Err(src
                    .error_at(
                        &raw.kind,
                        format!(
                            "`type: {}` datastores are not supported yet",
                            raw.kind.value
                        ),
                    )
                    .hint("use `type: local` with a `path`"));
            }
            other => {
                return Err(src.error_at(
                    &raw.kind,
                    format!("`type: {other}` is not a datastore type; use local"),
                ));
            }
        };
        Ok(DatastoreSpec {
            name: raw.name.value,
            location,
            description: raw.description,
        })
    }
}
