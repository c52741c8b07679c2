//! Dynamic fan-out: a task that maps over an array at a context key becomes,
//! at run time, one instance per element. Here are its definition fields'
//! rules and validated form; what happens at run time is the server's.

use serde::{Deserialize, Serialize};

/// The longest `map_over` and `map_output` key, in bytes.
///
/// ```
/// assert_eq!(tributary_core::MAX_MAP_KEY_BYTES, 256);
/// ```
pub const MAX_MAP_KEY_BYTES: usize = 256;
/// Default of `map_max_instances`.
///
/// ```
/// assert_eq!(tributary_core::DEFAULT_MAP_MAX_INSTANCES, 10_000);
/// ```
pub const DEFAULT_MAP_MAX_INSTANCES: u32 = 10_000;
/// The largest `map_max_instances`.
///
/// ```
/// assert_eq!(tributary_core::MAP_MAX_INSTANCES_LIMIT, 100_000);
/// ```
pub const MAP_MAX_INSTANCES_LIMIT: i64 = 100_000;

/// The key under which an instance finds its element in its input.
///
/// ```
/// assert_eq!(tributary_core::MAP_ELEMENT_KEY, "map_element");
/// ```
pub const MAP_ELEMENT_KEY: &str = "map_element";
/// The key under which an instance finds its element's 0-based index.
///
/// ```
/// assert_eq!(tributary_core::MAP_INDEX_KEY, "map_index");
/// ```
pub const MAP_INDEX_KEY: &str = "map_index";

/// A validated map: where the array is, where the gathered outputs go, and
/// how many instances at most.
///
/// ```
/// use tributary_core::{DefinitionLimits, WorkflowDefinition, validate};
/// let definition: WorkflowDefinition = serde_json::from_str(
///     r#"{"name": "w", "tasks": [{"id": "fetch", "map_over": "urls"}]}"#,
/// ).unwrap();
/// let spec = validate(&definition, 0, DefinitionLimits::default()).unwrap();
/// let map = spec.tasks[0].map.as_ref().unwrap();
/// assert_eq!((map.over.as_str(), map.output.as_str(), map.max_instances), ("urls", "fetch", 10_000));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapSpec {
    /// The top-level context key holding the array.
    pub over: String,
    /// The key the gathered array is written to.
    pub output: String,
    /// The most elements (instances) allowed.
    pub max_instances: u32,
}

/// What is wrong with a task's map fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// `map_output` or `map_max_instances` without `map_over`.
    #[error("{field} is set but map_over is not")]
    WithoutMapOver {
        /// The field set alone.
        field: &'static str,
    },
    /// A key longer than [`MAX_MAP_KEY_BYTES`].
    #[error("{field} is {bytes} bytes, over the limit of {MAX_MAP_KEY_BYTES}")]
    KeyTooLong {
        /// `map_over` or `map_output`.
        field: &'static str,
        /// The key's size.
        bytes: usize,
    },
    /// A key holding U+0000, which Postgres cannot store.
    #[error("{field} contains U+0000")]
    KeyWithNul {
        /// `map_over` or `map_output`.
        field: &'static str,
    },
    /// `map_max_instances` out of range.
    #[error("map_max_instances must be between 1 and {MAP_MAX_INSTANCES_LIMIT}, got {value}")]
    MaxInstancesOutOfRange {
        /// The value given.
        value: i64,
    },
}

fn check_key(field: &'static str, value: &str) -> Result<(), MapError> {
    if value.len() > MAX_MAP_KEY_BYTES {
        return Err(MapError::KeyTooLong {
            field,
            bytes: value.len(),
        });
    }
    if value.contains('\0') {
        return Err(MapError::KeyWithNul { field });
    }
    Ok(())
}

/// The map of task `task_id` from its definition fields: `None` when
/// `map_over` is empty (and nothing else of the map is set).
///
/// ```
/// use tributary_core::{MapError, normalize_map};
/// assert_eq!(normalize_map("t", "", "", None), Ok(None));
/// assert_eq!(
///     normalize_map("t", "", "out", None),
///     Err(MapError::WithoutMapOver { field: "map_output" }),
/// );
/// ```
pub fn normalize_map(
    task_id: &str,
    over: &str,
    output: &str,
    max_instances: Option<i64>,
) -> Result<Option<MapSpec>, MapError> {
    if over.is_empty() {
        if !output.is_empty() {
            return Err(MapError::WithoutMapOver {
                field: "map_output",
            });
        }
        if max_instances.is_some() {
            return Err(MapError::WithoutMapOver {
                field: "map_max_instances",
            });
        }
        return Ok(None);
    }
    check_key("map_over", over)?;
    let output = if output.is_empty() { task_id } else { output };
    check_key("map_output", output)?;
    let max_instances = match max_instances {
        None => DEFAULT_MAP_MAX_INSTANCES,
        Some(value) if (1..=MAP_MAX_INSTANCES_LIMIT).contains(&value) => {
            // In range, so it fits.
            u32::try_from(value).unwrap_or(DEFAULT_MAP_MAX_INSTANCES)
        }
        Some(value) => return Err(MapError::MaxInstancesOutOfRange { value }),
    };
    Ok(Some(MapSpec {
        over: over.to_owned(),
        output: output.to_owned(),
        max_instances,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_ranges() {
        let spec = normalize_map("t", "items", "", Some(1)).unwrap();
        assert_eq!(
            spec,
            Some(MapSpec {
                over: "items".into(),
                output: "t".into(),
                max_instances: 1
            })
        );
        assert_eq!(
            normalize_map("t", "items", "", Some(100_001)),
            Err(MapError::MaxInstancesOutOfRange { value: 100_001 })
        );
        assert_eq!(
            normalize_map("t", "items", "", Some(0)),
            Err(MapError::MaxInstancesOutOfRange { value: 0 })
        );
        assert_eq!(
            normalize_map("t", "a\0b", "", None),
            Err(MapError::KeyWithNul { field: "map_over" })
        );
        assert_eq!(
            normalize_map("t", "items", &"k".repeat(257), None),
            Err(MapError::KeyTooLong {
                field: "map_output",
                bytes: 257
            })
        );
        assert_eq!(
            normalize_map("t", "", "", Some(3)),
            Err(MapError::WithoutMapOver {
                field: "map_max_instances"
            })
        );
    }
}
