//! Results as an aligned two-column table or as one JSON object.

use serde_json::{Map, Value};

/// Ordered key/value results.
#[derive(Default)]
pub struct Report {
    entries: Vec<(String, Value)>,
}

impl Report {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn text(&mut self, key: &str, value: impl Into<String>) {
        self.entries
            .push((key.to_string(), Value::String(value.into())));
    }

    pub fn number(&mut self, key: &str, value: f64) {
        self.entries.push((key.to_string(), Value::from(value)));
    }

    pub fn count(&mut self, key: &str, value: usize) {
        self.entries.push((key.to_string(), Value::from(value)));
    }

    pub fn list(&mut self, key: &str, values: Vec<String>) {
        self.entries.push((key.to_string(), Value::from(values)));
    }

    pub fn value(&mut self, key: &str, value: Value) {
        self.entries.push((key.to_string(), value));
    }

    /// One JSON object with the keys in insertion order (snake_case).
    pub fn json(&self) -> String {
        let mut map = Map::new();
        for (k, v) in &self.entries {
            map.insert(k.replace([' ', '-'], "_"), v.clone());
        }
        Value::Object(map).to_string()
    }

    /// Rows for [`print_table`], numbers with 4 significant decimals.
    pub fn rows(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .map(|(k, v)| (k.clone(), display(v)))
            .collect()
    }
}

fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e6) {
                format!("{x:.4e}")
            } else {
                format!("{x:.4}")
            }
        }
        Value::Array(items) => items.iter().map(display).collect::<Vec<_>>().join(" "),
        // A selected feature: `name (norm)`.
        Value::Object(o) if o.contains_key("feature") => format!(
            "{} ({})",
            o.get("feature").map(display).unwrap_or_default(),
            o.get("group_norm").map(display).unwrap_or_default()
        ),
        other => other.to_string(),
    }
}

/// Prints `key  value` rows with the keys padded to one width.
pub fn print_table(rows: &[(String, String)]) {
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (k, v) in rows {
        println!("{k:<width$}  {v}");
    }
}

/// The selected features, largest group norm first, as `{"feature", "group_norm"}` objects:
/// the one shape every command reports them in.
pub fn selected_features(model: &metaadd::AdditiveModel) -> anyhow::Result<Vec<(String, f64)>> {
    let norms = model.group_norms()?;
    Ok(model
        .selected_by_norm()?
        .into_iter()
        .map(|j| (model.feature_names()[j].clone(), norms[j]))
        .collect())
}

/// [`selected_features`] as a JSON list.
pub fn selected_json(selected: &[(String, f64)]) -> Value {
    Value::from(
        selected
            .iter()
            .map(|(name, norm)| serde_json::json!({"feature": name, "group_norm": norm}))
            .collect::<Vec<_>>(),
    )
}
