//! The evaluation-time missing modes as choices of the protocol and of every command
//! (docs/method.md §3.3): which mode, without its rate. [`EvalMode::at_rate`] makes the
//! concrete [`EvalMissing`] that draws the masks.

use std::str::FromStr;

use crate::error::DataError;
use crate::missing::EvalMissing;

/// The evaluation-time missing modes (docs/method.md §3.3) as protocol choices. Every mode but
/// [`EvalMode::Smm`] is evaluated over a grid of rates `p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum EvalMode {
    /// `RMFM` (default): each valid position of `[text; audio; vision]` missing with `p`.
    #[default]
    Rmfm,
    /// `RMFM_same` with the same rate `(p, p, p)` for the three modalities.
    RmfmSame,
    /// `RMM`: whole modalities dropped per sample with `p`.
    Rmm,
    /// `TMFM` (aligned data): time steps dropped in all modalities at once.
    Tmfm,
    /// `STMFM` (aligned data): one block of time steps dropped.
    Stmfm,
    /// `SMM`: the seven modality subsets T, A, V, TA, TV, AV, TAV, no rate grid, no
    /// AUILC.
    Smm,
}

impl EvalMode {
    /// Every mode, in the order of [`EvalMode::name`]'s list.
    pub const ALL: [EvalMode; 6] = [
        EvalMode::Rmfm,
        EvalMode::RmfmSame,
        EvalMode::Rmm,
        EvalMode::Tmfm,
        EvalMode::Stmfm,
        EvalMode::Smm,
    ];

    /// The reference's name: `RMFM`, `RMFM_same`, `RMM`, `TMFM`, `STMFM`, `SMM`.
    pub fn name(self) -> &'static str {
        match self {
            EvalMode::Rmfm => "RMFM",
            EvalMode::RmfmSame => "RMFM_same",
            EvalMode::Rmm => "RMM",
            EvalMode::Tmfm => "TMFM",
            EvalMode::Stmfm => "STMFM",
            EvalMode::Smm => "SMM",
        }
    }

    /// The missing mode at rate `p`; `None` for [`EvalMode::Smm`], which has no rate.
    pub fn at_rate(self, p: f64) -> Option<EvalMissing> {
        Some(match self {
            EvalMode::Rmfm => EvalMissing::Rmfm { rate: p },
            EvalMode::RmfmSame => EvalMissing::RmfmSame { rates: [p; 3] },
            EvalMode::Rmm => EvalMissing::Rmm { rate: p },
            EvalMode::Tmfm => EvalMissing::Tmfm { rate: p },
            EvalMode::Stmfm => EvalMissing::Stmfm { rate: p },
            EvalMode::Smm => return None,
        })
    }
}

impl FromStr for EvalMode {
    type Err = DataError;

    /// Case-insensitive name, `-` and `_` alike: `rmfm`, `rmfm-same`, `RMFM_same`, `rmm`,
    /// `tmfm`, `stmfm`, `smm`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        EvalMode::ALL
            .into_iter()
            .find(|m| m.name().to_ascii_lowercase() == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = EvalMode::ALL.iter().map(|m| m.name()).collect();
                DataError::Invalid {
                    what: "missing mode".to_string(),
                    message: format!("`{s}` is not one of {}", names.join(", ")),
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names_round_trip() {
        for mode in EvalMode::ALL {
            assert_eq!(mode.name().parse::<EvalMode>().unwrap(), mode);
        }
        assert_eq!("rmfm-same".parse::<EvalMode>().unwrap(), EvalMode::RmfmSame);
        assert_eq!(EvalMode::default(), EvalMode::Rmfm);
        assert!(EvalMode::Smm.at_rate(0.5).is_none());
        assert_eq!(
            EvalMode::RmfmSame.at_rate(0.4),
            Some(EvalMissing::RmfmSame { rates: [0.4; 3] })
        );
        let error = "rmf".parse::<EvalMode>().unwrap_err().to_string();
        assert!(
            error.contains("`rmf`") && error.contains("STMFM"),
            "{error}"
        );
    }
}
