//! Layering: embedded defaults < config file < environment (`CRAWLER_AGENT_<SECTION>_<KEY>`,
//! and the crawler's own `SOCKET_PATH` for `socket.path`) < the `--db` and `--socket`
//! flags, remembering where each value came from. The result, `Loaded`, also holds the
//! database and socket paths resolved against the default locations (see `paths`).

use super::schema::Config;
use super::source::{ConfigError, Source};
use super::validate::validate;
use crate::paths::DefaultPaths;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The command-line flags that take part in configuration.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub db: Option<PathBuf>,
    pub socket: Option<PathBuf>,
}

/// The effective configuration, with the resolved paths and where each key came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub file: Option<PathBuf>,
    pub sources: BTreeMap<String, Source>,
    /// Each text value as the file or environment gave it (`90days`, `never`), so
    /// `config show` echoes what the operator wrote rather than a re-formatting.
    pub written: BTreeMap<String, String>,
    pub database: PathBuf,
    pub socket: PathBuf,
}

impl Loaded {
    /// Loads from the real process environment.
    pub fn from_process(flags: &Flags) -> Result<Loaded, ConfigError> {
        load(flags, &|var| std::env::var(var).ok())
    }

    pub fn source(&self, key: &str) -> &Source {
        self.sources.get(key).unwrap_or(&Source::Default)
    }

    /// Every key with its effective value as the operator wrote it (`90days` stays
    /// `90days`), as `section.key` → TOML text: what `config show` prints.
    pub fn entries_as_written(&self) -> Vec<(String, String)> {
        self.entries_with(true)
    }

    /// Every key with its effective value in canonical form (durations in their
    /// largest exact unit), as `section.key` → TOML text: what a reload compares, so
    /// rewriting `90days` as `90d` is no change.
    pub fn entries(&self) -> Vec<(String, String)> {
        self.entries_with(false)
    }

    fn entries_with(&self, as_written: bool) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Ok(toml::Value::Table(table)) = toml::Value::try_from(&self.config) {
            for (section, keys) in &table {
                let toml::Value::Table(keys) = keys else {
                    continue;
                };
                for (key, value) in keys {
                    let dotted = format!("{section}.{key}");
                    let value = match dotted.as_str() {
                        "storage.path" => toml::Value::String(self.database.display().to_string()),
                        "socket.path" => toml::Value::String(self.socket.display().to_string()),
                        "notify.webhook" => masked_webhooks(value),
                        _ => match (value, self.written.get(&dotted)) {
                            (toml::Value::String(_), Some(text)) if as_written => {
                                toml::Value::String(text.clone())
                            }
                            _ => value.clone(),
                        },
                    };
                    out.push((dotted, value.to_string()));
                }
            }
        }
        out
    }
}

/// Webhook URLs with only scheme and host shown: a Slack hook's path is its secret.
fn masked_webhooks(value: &toml::Value) -> toml::Value {
    let mut value = value.clone();
    if let toml::Value::Array(sinks) = &mut value {
        for sink in sinks {
            if let Some(toml::Value::String(url)) = sink.get_mut("url") {
                let scheme = if url.starts_with("http://") {
                    "http"
                } else {
                    "https"
                };
                let host = super::notify::host_of(url).unwrap_or("?").to_string();
                *url = format!("{scheme}://{host}/…");
            }
        }
    }
    value
}

const ENV_PREFIX: &str = "CRAWLER_AGENT_";

/// Variables with our prefix that are not configuration keys.
const OTHER_ENV_VARS: &[&str] = &[
    // Fault injection for tests (`failpoint`).
    "CRAWLER_AGENT_FAILPOINTS",
];

/// Every `CRAWLER_AGENT_*` variable the agent reads: one per configuration key, and
/// [`OTHER_ENV_VARS`]. The one list `config check` compares the environment with.
pub fn known_env_vars() -> Vec<String> {
    let mut known: Vec<String> = keys_of(&as_table(&Config::default()))
        .into_iter()
        .map(|(section, key, _)| format!("{ENV_PREFIX}{section}_{key}").to_uppercase())
        .chain(OTHER_ENV_VARS.iter().map(|v| v.to_string()))
        .collect();
    known.sort();
    known
}

/// One warning per `CRAWLER_AGENT_*` name in `names` that the agent does not read,
/// with the closest known name when one is near (a typo is otherwise silently
/// ignored). At most `MAX_ENV_WARNINGS`, each name cut to a readable length.
pub fn unknown_env_vars<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let known = known_env_vars();
    let mut warnings: Vec<String> = names
        .into_iter()
        .filter(|n| n.starts_with(ENV_PREFIX) && !known.iter().any(|k| k == n))
        .take(MAX_ENV_WARNINGS)
        .map(|name| {
            let shown: String = name.chars().take(100).collect();
            let near = known
                .iter()
                .map(|k| (strsim::jaro_winkler(&shown, k), k))
                .filter(|(score, _)| *score >= 0.9)
                .max_by(|a, b| a.0.total_cmp(&b.0));
            match near {
                Some((_, k)) => format!(
                    "environment variable {shown} is not a setting and is ignored; did you mean {k}?"
                ),
                None => format!(
                    "environment variable {shown} is not a setting and is ignored \
                     (settings are {ENV_PREFIX}<SECTION>_<KEY>; `config show` lists the keys)"
                ),
            }
        })
        .collect();
    warnings.sort();
    warnings
}

const MAX_ENV_WARNINGS: usize = 50;

pub fn load(flags: &Flags, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    let defaults = DefaultPaths::detect(env).map_err(ConfigError::Paths)?;
    let mut merged = as_table(&Config::default());
    let mut sources = BTreeMap::new();
    let mut written = BTreeMap::new();

    let file = flags.config.clone().or(defaults.config_file.clone());
    if let Some(path) = &file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let file_error = |message: String| ConfigError::File {
            path: path.clone(),
            message,
        };
        // Deserialising the text itself gives errors with line, column and key.
        toml::from_str::<Config>(&text).map_err(|e| file_error(e.to_string().trim().into()))?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| file_error(e.to_string()))?;
        for (section, keys) in table {
            let toml::Value::Table(keys) = keys else {
                continue;
            };
            for (key, value) in keys {
                let dotted = format!("{section}.{key}");
                if let toml::Value::String(text) = &value {
                    written.insert(dotted.clone(), text.clone());
                }
                sources.insert(dotted, Source::File(path.clone()));
                set(&mut merged, &section, &key, value);
            }
        }
    }

    for (section, key, default) in keys_of(&as_table(&Config::default())) {
        let var = format!("{ENV_PREFIX}{section}_{key}").to_uppercase();
        let from_env = env(&var).map(|raw| (var.clone(), raw)).or_else(|| {
            (section == "socket" && key == "path")
                .then(|| env("SOCKET_PATH").map(|raw| ("SOCKET_PATH".to_string(), raw)))
                .flatten()
        });
        let Some((var, raw)) = from_env else { continue };
        let value = env_value(&default, &raw).map_err(|message| ConfigError::Env {
            var: var.clone(),
            message,
        })?;
        // Check the one value on its own so the error names the variable.
        let mut single = toml::Table::new();
        set(&mut single, &section, &key, value.clone());
        toml::Value::Table(single)
            .try_into::<Config>()
            .map_err(|e| ConfigError::Env {
                var: var.clone(),
                // The message alone: the error's own "in `section.key`" line would
                // put the key on a second line; it goes in front instead.
                message: format!("{section}.{key}: {}", e.message().trim()),
            })?;
        let dotted = format!("{section}.{key}");
        match &value {
            toml::Value::String(text) => written.insert(dotted.clone(), text.clone()),
            _ => written.remove(&dotted),
        };
        set(&mut merged, &section, &key, value);
        sources.insert(dotted, Source::Env(var));
    }

    for (flag, section, value) in [
        ("--db", "storage", &flags.db),
        ("--socket", "socket", &flags.socket),
    ] {
        if let Some(path) = value {
            set(
                &mut merged,
                section,
                "path",
                toml::Value::String(path.display().to_string()),
            );
            sources.insert(format!("{section}.path"), Source::Flag(flag));
        }
    }

    let config: Config = toml::Value::Table(merged)
        .try_into()
        .map_err(|e| ConfigError::Paths(format!("configuration: {e}")))?;
    let source_of = |key: &str| sources.get(key).cloned().unwrap_or(Source::Default);
    // An out-of-range duration is quoted as it was written.
    let written_of = |key: &str| written.get(key).cloned();
    validate(&config, &source_of, &written_of)?;

    Ok(Loaded {
        database: defaults.database_or(&config.storage.path),
        socket: defaults.socket_or(&config.socket.path),
        config,
        file,
        sources,
        written,
    })
}

pub(super) fn as_table(config: &Config) -> toml::Table {
    match toml::Value::try_from(config) {
        Ok(toml::Value::Table(t)) => t,
        // Config is a struct of plain fields; it always serialises to a table.
        _ => unreachable!("Config serialises to a TOML table"),
    }
}

pub(super) fn keys_of(table: &toml::Table) -> Vec<(String, String, toml::Value)> {
    let mut out = Vec::new();
    for (section, keys) in table {
        if let toml::Value::Table(keys) = keys {
            for (key, value) in keys {
                out.push((section.clone(), key.clone(), value.clone()));
            }
        }
    }
    out
}

fn set(table: &mut toml::Table, section: &str, key: &str, value: toml::Value) {
    let entry = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(keys) = entry {
        keys.insert(key.to_string(), value);
    }
}

/// Reads an environment value as the same TOML type as the key's default: strings as
/// they are, lists comma-separated (numbers in a list become integers), numbers and
/// booleans parsed.
fn env_value(default: &toml::Value, raw: &str) -> Result<toml::Value, String> {
    Ok(match default {
        toml::Value::String(_) => toml::Value::String(raw.to_string()),
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| match s.parse::<i64>() {
                    Ok(n) => toml::Value::Integer(n),
                    Err(_) => toml::Value::String(s.to_string()),
                })
                .collect(),
        ),
        toml::Value::Integer(_) => toml::Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| format!("'{raw}' is not an integer"))?,
        ),
        toml::Value::Boolean(_) => toml::Value::Boolean(
            raw.trim()
                .parse()
                .map_err(|_| format!("'{raw}' is not true or false"))?,
        ),
        _ => return Err("this key cannot be set from the environment".into()),
    })
}
