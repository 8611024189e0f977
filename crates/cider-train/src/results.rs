//! Results files of the evaluation protocol: `results.json` (the whole evaluation) and
//! `results.csv` (one row per missing rate or SMM subset), written atomically, and a reader for
//! plotting and comparison.
//!
//! `results.json` layout (metric names are the reference's, e.g. `Non0_acc_2`):
//!
//! ```text
//! mode                      "RMFM", "RMFM_same", "RMM", "TMFM", "STMFM" or "SMM"
//! seed                      seed of the evaluation masks (1111)
//! rates                     [p_0, p_1, …]             (empty for SMM)
//! metrics.<name>            [m(p_0), m(p_1), …]        at the chosen τ
//! auilc.<name>              trapezoid area of metrics.<name> over rates (≥ 2 rates)
//! tau.rule                  how τ was chosen: validation, balanced-validation, prior-matching,
//!                           bias-independence, shift-gated, or fixed
//! tau.value                 the τ it chose (at rate 0, then fixed for every rate)
//! tau.detail                what the rule estimated on the way ("" if nothing)
//! tau.rules.<rule>          the τ every named rule picks on this split (without MACI: {})
//! sweep.metric              the headline metric's name
//! sweep.tau                 the τ grid [0.0, 0.1, …, 3.0] (without MACI: [0.0])
//! sweep.values              per rate (or SMM subset), the headline at every τ of sweep.tau
//! oracle.metrics.<name>     per rate, max over τ on the evaluated split (reference numbers)
//! oracle.auilc.<name>       AUILC of oracle.metrics.<name>
//! smm.<subset>.<name>       SMM only: metrics per modality subset (T, A, V, TA, TV, AV, TAV)
//! oracle.smm.<subset>.<name>  SMM only, oracle τ
//! config                    the evaluation settings and the caller's configuration
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use cider_data::dataset::Task;
use cider_data::missing::smm_rates;
use cider_data::missing_mode::EvalMode;
use cider_maci::counterfactual::{TAU_STEPS, TauSelection, tau_grid};
use cider_maci::metrics::Metric;
use cider_maci::tau_rules::TAU_RULE_NAMES;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::evaluate::{EvalError, Point, ProtocolResults};

/// File name of the JSON results.
pub const RESULTS_JSON: &str = "results.json";

/// File name of the per-rate CSV.
pub const RESULTS_CSV: &str = "results.csv";

/// Values by name, in a fixed order (written as a JSON object in that order).
pub type Named<T> = Vec<(String, T)>;

/// The content of a `results.json` (see the module docs for the layout).
#[derive(Debug, Clone, PartialEq)]
pub struct ResultsFile {
    /// Evaluation settings and the caller's configuration (model, checkpoint, split …).
    pub config: Value,
    /// Seed of the evaluation masks.
    pub seed: u32,
    /// The missing mode's reference name.
    pub mode: String,
    /// Missing rates (empty for SMM).
    pub rates: Vec<f64>,
    /// The τ of the run's rule (0 without MACI).
    pub tau: f64,
    /// The rule's name (`validation`, …, `fixed`).
    pub tau_rule: String,
    /// What the rule estimated on the way (the EM prior, the shift test; may be empty).
    pub tau_detail: String,
    /// The τ each named rule picks for this split, in the order of the docs (empty without
    /// MACI).
    pub rule_taus: Named<f64>,
    /// The headline metric of [`ResultsFile::sweep`].
    pub sweep_metric: String,
    /// Per point (rate or SMM subset), the headline metric at every τ of the grid (one value,
    /// τ = 0, without MACI).
    pub sweep: Vec<Vec<f64>>,
    /// Per metric, one value per rate at the chosen τ.
    pub metrics: Named<Vec<f64>>,
    /// AUILC of each [`ResultsFile::metrics`] series (empty with fewer than 2 rates).
    pub auilc: Named<f64>,
    /// Per metric, one value per rate, maximised over τ per rate.
    pub oracle_metrics: Named<Vec<f64>>,
    /// AUILC of each oracle series.
    pub oracle_auilc: Named<f64>,
    /// SMM only: per subset, the metrics at the validation τ.
    pub smm: Named<Named<f64>>,
    /// SMM only: per subset, the oracle metrics.
    pub oracle_smm: Named<Named<f64>>,
}

impl ResultsFile {
    /// The results of a protocol run. `config` holds the caller's settings; the protocol's
    /// own (`task`, `debiasing`, `batch_size`) are added to it.
    pub fn from_protocol(results: &ProtocolResults, mut config: Map<String, Value>) -> Self {
        let task = match results.task {
            Task::Binary => "binary",
            Task::Seven => "seven",
        };
        config.insert("task".into(), Value::from(task));
        config.insert(
            "debiasing".into(),
            Value::from(results.config.debiasing.name()),
        );
        config.insert("batch_size".into(), Value::from(results.config.batch_size));

        let names = Metric::for_task(results.task);
        let table = |rule: TauSelection| -> (Named<Vec<f64>>, Named<f64>) {
            if results.config.mode == EvalMode::Smm {
                return (Vec::new(), Vec::new());
            }
            let series = names
                .iter()
                .filter_map(|&m| Some((m.name().to_string(), results.series(m, rule)?)))
                .collect();
            let areas = names
                .iter()
                .filter_map(|&m| Some((m.name().to_string(), results.auilc(m, rule)?)))
                .collect();
            (series, areas)
        };
        let subsets = |rule: TauSelection| -> Named<Named<f64>> {
            results
                .points
                .iter()
                .filter_map(|p| match p.point {
                    Point::Subset(name) => {
                        let metrics = match rule {
                            TauSelection::Validation => &p.metrics,
                            TauSelection::Oracle => &p.oracle,
                        };
                        let values = metrics.iter().map(|(m, v)| (m.name().to_string(), v));
                        Some((name.to_string(), values.collect()))
                    }
                    Point::Rate(_) => None,
                })
                .collect()
        };
        let (metrics, auilc) = table(TauSelection::Validation);
        let (oracle_metrics, oracle_auilc) = table(TauSelection::Oracle);
        Self {
            config: Value::Object(config),
            seed: results.config.seed,
            mode: results.config.mode.name().to_string(),
            rates: results.rates(),
            tau: results.tau.value(),
            tau_rule: results.config.tau.name().to_string(),
            tau_detail: results.tau_detail.clone(),
            rule_taus: results
                .rule_taus
                .iter()
                .map(|(rule, tau)| (rule.name().to_string(), tau.value()))
                .collect(),
            sweep_metric: Metric::headline(results.task).name().to_string(),
            sweep: results
                .points
                .iter()
                .map(|p| p.headline_per_tau.clone())
                .collect(),
            metrics,
            auilc,
            oracle_metrics,
            oracle_auilc,
            smm: subsets(TauSelection::Validation),
            oracle_smm: subsets(TauSelection::Oracle),
        }
    }

    /// The per-rate series of a τ rule.
    pub fn series(&self, rule: TauSelection) -> &Named<Vec<f64>> {
        match rule {
            TauSelection::Validation => &self.metrics,
            TauSelection::Oracle => &self.oracle_metrics,
        }
    }

    /// The AUILC of one metric under a τ rule, if present.
    pub fn auilc_of(&self, rule: TauSelection, metric: &str) -> Option<f64> {
        let areas = match rule {
            TauSelection::Validation => &self.auilc,
            TauSelection::Oracle => &self.oracle_auilc,
        };
        areas
            .iter()
            .find(|(name, _)| name == metric)
            .map(|(_, v)| *v)
    }

    /// `results.json` as pretty-printed JSON, keys in the order of the module docs.
    pub fn to_json(&self) -> Result<String, EvalError> {
        let mut text = serde_json::to_string_pretty(&JsonLayout::of(self))
            .map_err(|e| EvalError::invalid("results", format!("not serialisable: {e}")))?;
        text.push('\n');
        Ok(text)
    }

    /// `results.csv`: a header, then one row per rate (`rate,tau,<metrics…>,oracle_<metrics…>`)
    /// or, for SMM, per subset (`subset,tau,…`). Rates and τ keep a decimal point (`0.0`).
    pub fn to_csv(&self) -> String {
        let smm = !self.smm.is_empty();
        let names: Vec<&str> = if smm {
            self.smm[0].1.iter().map(|(n, _)| n.as_str()).collect()
        } else {
            self.metrics.iter().map(|(n, _)| n.as_str()).collect()
        };
        let mut header = vec![
            if smm { "subset" } else { "rate" }.to_string(),
            "tau".into(),
        ];
        header.extend(names.iter().map(|n| n.to_string()));
        header.extend(names.iter().map(|n| format!("oracle_{n}")));
        let mut lines = vec![header.join(",")];
        let tau = format!("{:?}", self.tau);
        if smm {
            for ((subset, values), (_, oracle)) in self.smm.iter().zip(&self.oracle_smm) {
                let mut row = vec![subset.clone(), tau.clone()];
                row.extend(values.iter().map(|(_, v)| v.to_string()));
                row.extend(oracle.iter().map(|(_, v)| v.to_string()));
                lines.push(row.join(","));
            }
        } else {
            for (k, rate) in self.rates.iter().enumerate() {
                let mut row = vec![format!("{rate:?}"), tau.clone()];
                for table in [&self.metrics, &self.oracle_metrics] {
                    row.extend(table.iter().map(|(_, values)| values[k].to_string()));
                }
                lines.push(row.join(","));
            }
        }
        let mut text = lines.join("\n");
        text.push('\n');
        text
    }

    /// Writes `results.json` and `results.csv` into `dir` (created if needed), each through a
    /// temporary file and a rename, so a reader never sees half a file. Returns both paths.
    pub fn write(&self, dir: &Path) -> Result<[PathBuf; 2], EvalError> {
        std::fs::create_dir_all(dir).map_err(|source| EvalError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let json = dir.join(RESULTS_JSON);
        let csv = dir.join(RESULTS_CSV);
        write_atomic(&json, self.to_json()?.as_bytes())?;
        write_atomic(&csv, self.to_csv().as_bytes())?;
        Ok([json, csv])
    }

    /// Reads a `results.json`, checking its layout (every series as long as `rates`).
    pub fn read(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let file = path.display().to_string();
        let value: Value = serde_json::from_str(&text).map_err(|e| EvalError::Format {
            file: file.clone(),
            key: "(top level)".into(),
            expected: format!("JSON ({e})"),
        })?;
        Reader { file, root: &value }.results()
    }
}

/// Writes `bytes` to `path` through a temporary sibling file and a rename; on failure the
/// temporary file is removed and `path` is left as it was.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EvalError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let io = |source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    drop(file);
    written.map_err(|source| {
        // Best effort: the error that matters is the write's.
        let _ = std::fs::remove_file(&tmp);
        io(source)
    })
}

/// Named values as a JSON object in their order.
struct Ordered<'a, T>(&'a [(String, T)]);

impl<T: Serialize> Serialize for Ordered<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// `smm.<subset>.<metric>` as nested objects in their order.
struct OrderedTable<'a>(&'a [(String, Named<f64>)]);

impl Serialize for OrderedTable<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, values) in self.0 {
            map.serialize_entry(name, &Ordered(values))?;
        }
        map.end()
    }
}

/// The key order of `results.json`.
#[derive(Serialize)]
struct JsonLayout<'a> {
    mode: &'a str,
    seed: u32,
    rates: &'a [f64],
    metrics: Ordered<'a, Vec<f64>>,
    auilc: Ordered<'a, f64>,
    tau: TauLayout<'a>,
    sweep: SweepLayout<'a>,
    oracle: OracleLayout<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    smm: Option<OrderedTable<'a>>,
    config: &'a Value,
}

#[derive(Serialize)]
struct TauLayout<'a> {
    rule: &'a str,
    value: f64,
    detail: &'a str,
    rules: Ordered<'a, f64>,
}

#[derive(Serialize)]
struct SweepLayout<'a> {
    metric: &'a str,
    tau: Vec<f64>,
    values: &'a [Vec<f64>],
}

#[derive(Serialize)]
struct OracleLayout<'a> {
    metrics: Ordered<'a, Vec<f64>>,
    auilc: Ordered<'a, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    smm: Option<OrderedTable<'a>>,
}

impl<'a> JsonLayout<'a> {
    fn of(r: &'a ResultsFile) -> Self {
        let smm = |t: &'a Named<Named<f64>>| (!t.is_empty()).then_some(OrderedTable(t));
        Self {
            mode: &r.mode,
            seed: r.seed,
            rates: &r.rates,
            metrics: Ordered(&r.metrics),
            auilc: Ordered(&r.auilc),
            tau: TauLayout {
                rule: &r.tau_rule,
                value: r.tau,
                detail: &r.tau_detail,
                rules: Ordered(&r.rule_taus),
            },
            sweep: SweepLayout {
                metric: &r.sweep_metric,
                tau: sweep_grid(&r.sweep),
                values: &r.sweep,
            },
            oracle: OracleLayout {
                metrics: Ordered(&r.oracle_metrics),
                auilc: Ordered(&r.oracle_auilc),
                smm: smm(&r.oracle_smm),
            },
            smm: smm(&r.smm),
            config: &r.config,
        }
    }
}

/// The τ values of a sweep's columns: the grid, or `[0.0]` for single-value rows.
fn sweep_grid(sweep: &[Vec<f64>]) -> Vec<f64> {
    match sweep.first().map(Vec::len) {
        Some(1) => vec![0.0],
        _ => tau_grid(),
    }
}

/// Position of a metric name in the reference's report order (unknown names last).
fn metric_rank(name: &str) -> usize {
    const ORDER: [Metric; 8] = [
        Metric::Has0Acc2,
        Metric::Has0F1Score,
        Metric::Non0Acc2,
        Metric::Non0F1Score,
        Metric::Acc3,
        Metric::F1Score3,
        Metric::Acc7,
        Metric::F1Score7,
    ];
    ORDER
        .iter()
        .position(|m| m.name() == name)
        .unwrap_or(ORDER.len())
}

/// Position of an SMM subset in the order of [`smm_rates`] (unknown names last).
fn subset_rank(name: &str) -> usize {
    let subsets = smm_rates();
    subsets
        .iter()
        .position(|(n, _)| *n == name)
        .unwrap_or(subsets.len())
}

/// Typed access to the parsed JSON with errors naming the file and the key.
struct Reader<'a> {
    file: String,
    root: &'a Value,
}

impl Reader<'_> {
    fn error(&self, key: &str, expected: &str) -> EvalError {
        EvalError::Format {
            file: self.file.clone(),
            key: key.to_string(),
            expected: expected.to_string(),
        }
    }

    /// The value at a dotted path, if present.
    fn get(&self, key: &str) -> Option<&Value> {
        key.split('.').try_fold(self.root, |v, part| v.get(part))
    }

    /// `sweep.values`: one row per point, each of [`TAU_STEPS`] numbers (or 1 without MACI).
    fn sweep(&self, points: usize) -> Result<Vec<Vec<f64>>, EvalError> {
        let expected = format!(
            "{points} lists (one per point) of {TAU_STEPS} numbers (one per τ), or of 1 without \
             MACI"
        );
        let rows = self
            .get("sweep.values")
            .and_then(Value::as_array)
            .filter(|rows| rows.len() == points)
            .ok_or_else(|| self.error("sweep.values", &expected))?;
        let width = match rows.first().and_then(Value::as_array).map(Vec::len) {
            Some(width @ (1 | TAU_STEPS)) => width,
            _ if rows.is_empty() => TAU_STEPS,
            _ => return Err(self.error("sweep.values", &expected)),
        };
        rows.iter()
            .map(|row| self.numbers("sweep.values", row, width))
            .collect()
    }

    fn text(&self, key: &str) -> Result<&str, EvalError> {
        self.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| self.error(key, "a string"))
    }

    fn number(&self, key: &str, value: Option<&Value>) -> Result<f64, EvalError> {
        value
            .and_then(Value::as_f64)
            .ok_or_else(|| self.error(key, "a number"))
    }

    fn numbers(&self, key: &str, value: &Value, len: usize) -> Result<Vec<f64>, EvalError> {
        let expected = format!("a list of {len} numbers");
        let list = value
            .as_array()
            .filter(|l| l.len() == len)
            .ok_or_else(|| self.error(key, &expected))?;
        list.iter()
            .map(|v| v.as_f64().ok_or_else(|| self.error(key, &expected)))
            .collect()
    }

    fn object(&self, key: &str) -> Result<Vec<(&String, &Value)>, EvalError> {
        match self.get(key) {
            Some(Value::Object(map)) => Ok(map.iter().collect()),
            _ => Err(self.error(key, "an object")),
        }
    }

    /// `key.<name>` numbers, in report order.
    fn named_numbers(&self, key: &str) -> Result<Named<f64>, EvalError> {
        let mut out = self
            .object(key)?
            .into_iter()
            .map(|(name, v)| {
                Ok((
                    name.clone(),
                    self.number(&format!("{key}.{name}"), Some(v))?,
                ))
            })
            .collect::<Result<Named<f64>, EvalError>>()?;
        out.sort_by_key(|(name, _)| metric_rank(name));
        Ok(out)
    }

    /// `key.<name>` lists of `len` numbers, in report order.
    fn named_series(&self, key: &str, len: usize) -> Result<Named<Vec<f64>>, EvalError> {
        let mut out = self
            .object(key)?
            .into_iter()
            .map(|(name, v)| {
                Ok((
                    name.clone(),
                    self.numbers(&format!("{key}.{name}"), v, len)?,
                ))
            })
            .collect::<Result<Named<Vec<f64>>, EvalError>>()?;
        out.sort_by_key(|(name, _)| metric_rank(name));
        Ok(out)
    }

    /// `key.<subset>.<metric>` (absent → empty), subsets in SMM order.
    fn subset_table(&self, key: &str) -> Result<Named<Named<f64>>, EvalError> {
        if self.get(key).is_none() {
            return Ok(Vec::new());
        }
        let mut out = self
            .object(key)?
            .into_iter()
            .map(|(subset, _)| {
                Ok((
                    subset.clone(),
                    self.named_numbers(&format!("{key}.{subset}"))?,
                ))
            })
            .collect::<Result<Named<Named<f64>>, EvalError>>()?;
        out.sort_by_key(|(subset, _)| subset_rank(subset));
        Ok(out)
    }

    fn results(&self) -> Result<ResultsFile, EvalError> {
        let rates = self
            .get("rates")
            .and_then(Value::as_array)
            .ok_or_else(|| self.error("rates", "a list of numbers"))?;
        let rates = self.numbers("rates", &Value::Array(rates.clone()), rates.len())?;
        let n = rates.len();
        let seed = self
            .get("seed")
            .and_then(Value::as_u64)
            .and_then(|s| u32::try_from(s).ok())
            .ok_or_else(|| self.error("seed", "an integer seed below 2^32"))?;
        let mode = self
            .get("mode")
            .and_then(Value::as_str)
            .ok_or_else(|| self.error("mode", "the missing mode's name"))?;
        // Files written before the τ rules hold `tau.validation` alone.
        let (tau, tau_rule) = match self.get("tau.value") {
            Some(value) => (
                self.number("tau.value", Some(value))?,
                self.text("tau.rule")?.to_string(),
            ),
            None => (
                self.number("tau.value", self.get("tau.validation"))?,
                "validation".to_string(),
            ),
        };
        let tau_detail = match self.get("tau.detail") {
            Some(_) => self.text("tau.detail")?.to_string(),
            None => String::new(),
        };
        let mut rule_taus = match self.get("tau.rules") {
            Some(_) => self.named_numbers("tau.rules")?,
            None => Vec::new(),
        };
        rule_taus.sort_by_key(|(name, _)| {
            TAU_RULE_NAMES
                .iter()
                .position(|rule| rule == name)
                .unwrap_or(TAU_RULE_NAMES.len())
        });
        let smm = self.subset_table("smm")?;
        let oracle_smm = self.subset_table("oracle.smm")?;
        let points = if smm.is_empty() { n } else { smm.len() };
        let (sweep_metric, sweep) = match self.get("sweep") {
            Some(_) => (self.text("sweep.metric")?.to_string(), self.sweep(points)?),
            None => (String::new(), Vec::new()),
        };
        Ok(ResultsFile {
            config: self.get("config").cloned().unwrap_or(Value::Null),
            seed,
            mode: mode.to_string(),
            tau,
            tau_rule,
            tau_detail,
            rule_taus,
            sweep_metric,
            sweep,
            metrics: self.named_series("metrics", n)?,
            auilc: self.named_numbers("auilc")?,
            oracle_metrics: self.named_series("oracle.metrics", n)?,
            oracle_auilc: self.named_numbers("oracle.auilc")?,
            smm,
            oracle_smm,
            rates,
        })
    }
}

#[cfg(test)]
mod tests {
    use cider_model::network_config::PositionalMode;

    use super::*;
    use crate::evaluate::ProtocolConfig;
    use crate::evaluate::tests::Fixture;

    /// A fresh scratch folder for one test.
    fn scratch(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cider-results-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn settings() -> Map<String, Value> {
        let mut config = Map::new();
        config.insert("split".into(), Value::from("test"));
        config
    }

    fn keys(value: &Value) -> Vec<&str> {
        let mut keys: Vec<&str> = value
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn results_json_has_the_documented_layout_and_reads_back() {
        let f = Fixture::new(PositionalMode::BatchIndex);
        let results = f.run(&ProtocolConfig::default());
        let file = ResultsFile::from_protocol(&results, settings());
        let dir = scratch("layout");
        let [json_path, csv_path] = file.write(&dir).unwrap();
        assert_eq!(json_path, dir.join("results.json"));

        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
        assert_eq!(
            keys(&json),
            [
                "auilc", "config", "metrics", "mode", "oracle", "rates", "seed", "sweep", "tau"
            ]
        );
        assert_eq!(json["mode"], "RMFM");
        assert_eq!(json["seed"], 1111);
        assert_eq!(
            json["rates"],
            serde_json::json!(crate::evaluate::default_rates())
        );
        assert_eq!(keys(&json["tau"]), ["detail", "rule", "rules", "value"]);
        assert_eq!(json["tau"]["value"], results.tau.value());
        assert_eq!(json["tau"]["rule"], "shift-gated");
        let rules: Vec<&str> = json["tau"]["rules"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(rules.len(), cider_maci::tau_rules::TAU_RULE_NAMES.len());
        assert_eq!(json["tau"]["rules"]["shift-gated"], results.tau.value());
        // The sweep: per rate, the headline at the 31 τ; at the chosen τ it is the metric.
        assert_eq!(json["sweep"]["metric"], "Non0_acc_2");
        assert_eq!(json["sweep"]["tau"].as_array().unwrap().len(), 31);
        let values = json["sweep"]["values"].as_array().unwrap();
        assert_eq!(values.len(), 11);
        for (row, point) in values.iter().zip(&results.points) {
            assert_eq!(
                row[results.tau.index()].as_f64(),
                point.metrics.get(Metric::Non0Acc2)
            );
        }
        assert_eq!(keys(&json["oracle"]), ["auilc", "metrics"]);
        let mut names: Vec<&str> = Metric::for_task(Task::Binary)
            .iter()
            .map(|m| m.name())
            .collect();
        names.sort_unstable();
        for table in [&json["metrics"], &json["auilc"], &json["oracle"]["metrics"]] {
            assert_eq!(keys(table), names);
        }
        assert_eq!(keys(&json["oracle"]["auilc"]), names);
        for &metric in Metric::for_task(Task::Binary) {
            let name = metric.name();
            let series = results.series(metric, TauSelection::Validation).unwrap();
            assert_eq!(json["metrics"][name], serde_json::json!(series));
            let oracle = results.series(metric, TauSelection::Oracle).unwrap();
            assert_eq!(json["oracle"]["metrics"][name], serde_json::json!(oracle));
            let area = results.auilc(metric, TauSelection::Validation).unwrap();
            assert_eq!(json["auilc"][name], area);
        }
        assert_eq!(json["config"]["split"], "test");
        assert_eq!(json["config"]["task"], "binary");
        assert_eq!(json["config"]["debiasing"], "maci");
        assert_eq!(json["config"]["batch_size"], 128);
        // Keys are written in the documented order: mode first, config last.
        let text = std::fs::read_to_string(&json_path).unwrap();
        assert!(text.find("\"mode\"") < text.find("\"rates\""));
        assert!(text.find("\"oracle\"") < text.find("\"config\""));

        let csv = std::fs::read_to_string(&csv_path).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 12);
        assert_eq!(
            lines[0],
            "rate,tau,Has0_acc_2,Has0_F1_score,Non0_acc_2,Non0_F1_score,Acc_3,F1_score_3,\
             oracle_Has0_acc_2,oracle_Has0_F1_score,oracle_Non0_acc_2,oracle_Non0_F1_score,\
             oracle_Acc_3,oracle_F1_score_3"
        );
        let row: Vec<f64> = lines[4].split(',').map(|v| v.parse().unwrap()).collect();
        assert_eq!(row[0], 0.3);
        assert_eq!(row[1], results.tau.value());
        assert_eq!(
            Some(row[4]),
            results.points[3].metrics.get(Metric::Non0Acc2)
        );
        assert_eq!(
            Some(row[10]),
            results.points[3].oracle.get(Metric::Non0Acc2)
        );

        let back = ResultsFile::read(&json_path).unwrap();
        assert_eq!(back, file);
        // A file written before the τ rules: `tau.validation` alone, no sweep.
        let mut old = json.clone();
        old["tau"] = serde_json::json!({ "validation": 0.4 });
        old.as_object_mut().unwrap().remove("sweep");
        std::fs::write(&json_path, old.to_string()).unwrap();
        let before = ResultsFile::read(&json_path).unwrap();
        assert_eq!((before.tau, before.tau_rule.as_str()), (0.4, "validation"));
        assert!(before.rule_taus.is_empty() && before.sweep.is_empty());
        assert_eq!(before.metrics, file.metrics);
        assert!(
            !dir.read_dir().unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp")),
            "no temporary file is left behind"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn two_runs_write_identical_files() {
        let f = Fixture::new(PositionalMode::BatchIndex);
        let config = ProtocolConfig::default();
        let write = |name: &str| {
            let file = ResultsFile::from_protocol(&f.run(&config), settings());
            let dir = scratch(name);
            let [json, csv] = file.write(&dir).unwrap();
            let bytes = (std::fs::read(json).unwrap(), std::fs::read(csv).unwrap());
            std::fs::remove_dir_all(&dir).unwrap();
            bytes
        };
        assert_eq!(write("run-a"), write("run-b"));
    }

    #[test]
    fn smm_results_hold_the_subset_tables() {
        let f = Fixture::new(PositionalMode::BatchIndex);
        let results = f.run(&ProtocolConfig {
            mode: EvalMode::Smm,
            ..ProtocolConfig::default()
        });
        let file = ResultsFile::from_protocol(&results, Map::new());
        let json: Value = serde_json::from_str(&file.to_json().unwrap()).unwrap();
        assert_eq!(json["mode"], "SMM");
        assert_eq!(json["rates"], serde_json::json!([]));
        assert_eq!(keys(&json["metrics"]), Vec::<&str>::new());
        assert_eq!(keys(&json["smm"]), ["A", "AV", "T", "TA", "TAV", "TV", "V"]);
        let tav = results.points[6].metrics.get(Metric::Non0Acc2).unwrap();
        assert_eq!(json["smm"]["TAV"]["Non0_acc_2"], tav);
        let t = results.points[0].oracle.get(Metric::Acc3).unwrap();
        assert_eq!(json["oracle"]["smm"]["T"]["Acc_3"], t);

        let csv = file.to_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 8);
        assert!(lines[0].starts_with("subset,tau,Has0_acc_2,"));
        assert!(lines[7].starts_with("TAV,"));

        let dir = scratch("smm");
        let [json_path, _] = file.write(&dir).unwrap();
        let back = ResultsFile::read(&json_path).unwrap();
        assert_eq!(back, file);
        let subsets: Vec<&str> = back.smm.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(subsets, ["T", "A", "V", "TA", "TV", "AV", "TAV"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn malformed_results_name_the_file_and_key() {
        let dir = scratch("malformed");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("results.json");
        let cases = [
            ("{", "(top level)"),
            (r#"{"mode": "RMFM", "seed": 1111}"#, "`rates`"),
            (
                r#"{"mode": "RMFM", "seed": 1111, "rates": [0, 1], "tau": {"validation": 0},
                   "metrics": {"Acc_7": [0.5]}}"#,
                "`metrics.Acc_7`: expected a list of 2 numbers",
            ),
            (r#"{"mode": "RMFM", "seed": -1, "rates": [0, 1]}"#, "`seed`"),
            (
                r#"{"mode": "RMFM", "seed": 1111, "rates": [0, 1], "tau": {"validation": 0},
                   "sweep": {"metric": "Acc_7", "values": [[0.5, 0.5, 0.5, 0.5, 0.5]]}}"#,
                "`sweep.values`: expected 2 lists (one per point) of 31 numbers",
            ),
            (
                r#"{"mode": "RMFM", "seed": 1111, "rates": [0, 1], "tau": {"validation": 0},
                   "sweep": {"metric": "Acc_7", "values": [[0.5, 0.4, 0.3], [0.5, 0.4, 0.3]]}}"#,
                "`sweep.values`: expected 2 lists (one per point) of 31 numbers",
            ),
        ];
        for (text, needle) in cases {
            std::fs::write(&path, text).unwrap();
            let message = ResultsFile::read(&path).unwrap_err().to_string();
            assert!(message.contains("results.json"), "{message}");
            assert!(message.contains(needle), "{needle}: {message}");
        }
        let absent = ResultsFile::read(&dir.join("absent.json")).unwrap_err();
        assert!(absent.to_string().contains("absent.json"), "{absent}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        // A non-empty folder where the file should go: the rename fails, even as root.
        let dir = scratch("failed-write");
        let target = dir.join("results.json");
        std::fs::create_dir_all(target.join("inside")).unwrap();
        let error = write_atomic(&target, b"{}").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(&format!("{}: ", target.display())),
            "{error}"
        );
        let names: Vec<String> = dir
            .read_dir()
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["results.json"],
            "only the folder that was there is left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
