//! Versioned assets (environments, models, data): immutable `name:version` records; `@latest`
//! is the last one registered; with no version given, the next free number is used.

use berth_core::serving::ModelRecord;
use berth_core::spec::asset::{AssetVersion, DataRecord};
use berth_core::spec::component::ComponentRecord;
use berth_core::spec::environment::EnvironmentRecord;
use berth_store::{Kind, StoreError, Stored};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

/// A kind of versioned asset.
pub trait Asset: Serialize + DeserializeOwned + Send + Sync {
    /// Where it is stored.
    const KIND: Kind;
    /// The word for it in messages.
    const NOUN: &'static str;
    /// The CLI group that registers it.
    const GROUP: &'static str;
    /// Its name.
    fn name(&self) -> &str;
    /// Its version.
    fn version(&self) -> &str;
}

impl Asset for EnvironmentRecord {
    const KIND: Kind = Kind::Environment;
    const NOUN: &'static str = "environment";
    const GROUP: &'static str = "environment";
    fn name(&self) -> &str {
        &self.name
    }
    fn version(&self) -> &str {
        &self.version
    }
}

impl Asset for ModelRecord {
    const KIND: Kind = Kind::Model;
    const NOUN: &'static str = "model";
    const GROUP: &'static str = "model";
    fn name(&self) -> &str {
        &self.name
    }
    fn version(&self) -> &str {
        &self.version
    }
}

impl Asset for DataRecord {
    const KIND: Kind = Kind::Data;
    const NOUN: &'static str = "data asset";
    const GROUP: &'static str = "data";
    fn name(&self) -> &str {
        &self.name
    }
    fn version(&self) -> &str {
        &self.version
    }
}

impl Asset for ComponentRecord {
    const KIND: Kind = Kind::Component;
    const NOUN: &'static str = "component";
    const GROUP: &'static str = "component";
    fn name(&self) -> &str {
        &self.name
    }
    fn version(&self) -> &str {
        &self.version
    }
}

/// The store key of a version.
pub fn key(name: &str, version: &str) -> String {
    format!("{name}:{version}")
}

/// Every version (of one name, if given), in registration order.
pub async fn all<T: Asset>(
    state: &AppState,
    name: Option<&str>,
) -> Result<Vec<Stored<T>>, ApiError> {
    let all = state.store.list::<T>(T::KIND).await?;
    Ok(all
        .into_iter()
        .filter(|s| name.is_none_or(|n| s.value.name() == n))
        .collect())
}

/// One version, or the last registered.
pub async fn find<T: Asset>(
    state: &AppState,
    name: &str,
    version: &AssetVersion,
) -> Result<Option<T>, ApiError> {
    Ok(match version {
        AssetVersion::Exact(v) => state
            .store
            .get::<T>(T::KIND, &key(name, v))
            .await?
            .map(|s| s.value),
        AssetVersion::Latest => all::<T>(state, Some(name))
            .await?
            .into_iter()
            .max_by_key(|s| s.seq)
            .map(|s| s.value),
    })
}

/// One version as the API names it: a version, or `latest`.
pub async fn get<T: Asset>(state: &AppState, name: &str, version: &str) -> Result<T, ApiError> {
    let wanted = match version {
        "latest" => AssetVersion::Latest,
        v => AssetVersion::Exact(v.to_string()),
    };
    find(state, name, &wanted)
        .await?
        .ok_or_else(|| not_found::<T>(name, &wanted))
}

/// The version to register: the one given, or one more than the largest numeric version.
pub async fn version_for<T: Asset>(
    state: &AppState,
    name: &str,
    given: Option<String>,
) -> Result<String, ApiError> {
    if let Some(v) = given {
        return Ok(v);
    }
    let versions = all::<T>(state, Some(name)).await?;
    Ok(next_version(versions.iter().map(|s| s.value.version())))
}

fn next_version<'a>(existing: impl Iterator<Item = &'a str>) -> String {
    let max = existing.filter_map(|v| v.parse::<u64>().ok()).max();
    (max.unwrap_or(0) + 1).to_string()
}

/// Stores a new version; an existing one is never replaced.
pub async fn insert<T: Asset>(state: &AppState, record: &T) -> Result<(), ApiError> {
    let k = key(record.name(), record.version());
    match state.store.insert(T::KIND, &k, None, record).await {
        Ok(_) => Ok(()),
        Err(StoreError::AlreadyExists { .. }) => Err(ApiError::AlreadyExists {
            kind: match T::KIND {
                Kind::Environment => "environment version",
                Kind::Model => "model version",
                Kind::Component => "component version",
                _ => "data asset version",
            },
            name: k,
            hint: Some(format!(
                "{} versions never change; register a new version (--version or `version:`)",
                T::NOUN
            )),
        }),
        Err(e) => Err(e.into()),
    }
}

/// `name:version` or `name@latest`.
pub fn describe(name: &str, version: &AssetVersion) -> String {
    match version {
        AssetVersion::Exact(v) => key(name, v),
        AssetVersion::Latest => format!("{name}@latest"),
    }
}

/// What to do when a version does not exist.
pub fn register_hint<T: Asset>(name: &str) -> String {
    format!(
        "register it with `berth {g} create --file <file>`; `berth {g} list --name {name}` shows its versions",
        g = T::GROUP
    )
}

/// The error for a version that does not exist.
pub fn not_found<T: Asset>(name: &str, version: &AssetVersion) -> ApiError {
    ApiError::NotFound {
        kind: T::NOUN,
        name: describe(name, version),
        hint: Some(register_hint::<T>(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::next_version;

    #[test]
    fn versions_count_up_from_the_largest_number() {
        assert_eq!(next_version([].into_iter()), "1");
        assert_eq!(next_version(["1", "7", "3", "beta"].into_iter()), "8");
    }
}
