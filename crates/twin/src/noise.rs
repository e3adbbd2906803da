//! Differential privacy for public aggregates (optional per deployment).
//!
//! k-anonymous groups keep any one household from being singled out by
//! *which* values are shown; differential privacy bounds what the shown
//! values themselves reveal about any one household, however much else an
//! observer knows. With it on, every public aggregate is released with
//! Laplace noise:
//!
//! - **Clamping**: each household's reading counts clamped to the range its
//!   quantity is configured with (`[lo, hi]`), so one household changes a sum
//!   by at most `hi − lo` (a mean over `n` by `(hi − lo) / n`): the
//!   sensitivity.
//! - **Releases**: time is cut into slots of `window / releases` by device
//!   time. An aggregate releases at most one value per slot — the first
//!   time its members change in a slot with no release yet — and holds it
//!   until a later slot; so per window it makes at most `releases` releases,
//!   each with `ε / releases`, and by sequential composition spends at most
//!   `ε` per window. A household is in one public group per quantity, so
//!   that is also its budget per window and quantity.
//! - **The same noise for the same release**: the noise is drawn from a
//!   keyed hash (BLAKE3, the deployment's secret key) of the aggregate and
//!   the slot, so asking again — another viewer, a pick, a reconnect —
//!   returns the very same value and averages nothing away.
//! - **Restarts**: the slot a twin starts in counts as released (nothing is
//!   released in it), so a restart cannot release a second value, with the
//!   same noise, in a slot that already had one.
//!
//! Operators and planners get exact values (their aggregates are other
//! sensors); residents see the public's values.

use std::collections::BTreeMap;

use bevy::prelude::*;

use crate::city::AggregateRule;
use crate::components::StoredReading;
use crate::privacy::combine;

/// How public aggregates are made differentially private.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseOptions {
    /// Privacy budget per aggregate (so per household and quantity) per
    /// window.
    pub epsilon: f64,
    /// The window the budget holds over, ms.
    pub window_ms: i64,
    /// Releases per window; each spends `epsilon / releases`.
    pub releases: u32,
    /// The range one household's reading is clamped to, per quantity;
    /// public aggregates of a quantity without one have no value.
    pub bounds: BTreeMap<String, (f64, f64)>,
    /// The secret the noise is derived from (kept by the deployment, the
    /// same across restarts).
    pub key: [u8; 32],
}

impl NoiseOptions {
    /// Length of a release slot, ms (at least 1).
    pub fn slot_ms(&self) -> i64 {
        (self.window_ms / i64::from(self.releases.max(1))).max(1)
    }

    /// The budget each release spends.
    pub fn epsilon_per_release(&self) -> f64 {
        self.epsilon / f64::from(self.releases.max(1))
    }

    /// The Laplace scale of an aggregate of `members` readings of
    /// `quantity`, summed (`additive`) or averaged; `None` without a bound
    /// for the quantity.
    pub fn scale(&self, quantity: &str, additive: bool, members: usize) -> Option<f64> {
        let (lo, hi) = *self.bounds.get(quantity)?;
        let range = hi - lo;
        let sensitivity = if additive {
            range
        } else {
            range / members.max(1) as f64
        };
        Some(sensitivity / self.epsilon_per_release())
    }

    /// The noise of release `slot` of aggregate `id` at `scale`: Laplace,
    /// from the keyed hash of both (the same arguments give the same noise).
    pub fn noise(&self, id: &str, slot: i64, scale: f64) -> f64 {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(id.as_bytes());
        hasher.update(&[0]);
        hasher.update(&slot.to_le_bytes());
        let bytes = hasher.finalize();
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes.as_bytes()[..8]);
        // 53 random bits as a uniform in (0, 1), never 0 or 1.
        let uniform = ((u64::from_le_bytes(word) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        laplace(uniform, scale)
    }
}

/// The Laplace(0, `scale`) value at cumulative probability `uniform`
/// (0 < uniform < 1): its inverse distribution function.
pub fn laplace(uniform: f64, scale: f64) -> f64 {
    let centred = uniform - 0.5;
    -scale * centred.signum() * (1.0 - 2.0 * centred.abs()).ln()
}

/// The noise settings and, per public aggregate, the last slot released.
#[derive(Resource, Debug)]
pub(crate) struct PublicNoise {
    pub(crate) options: NoiseOptions,
    /// Aggregate handle → last slot released (or the start slot).
    released: BTreeMap<u32, i64>,
    start_slot: i64,
}

impl PublicNoise {
    /// Noise with `options`, for a twin started at wall-clock `now_ms`.
    pub(crate) fn new(options: NoiseOptions, now_ms: i64) -> Self {
        let start_slot = now_ms.div_euclid(options.slot_ms());
        Self {
            options,
            released: BTreeMap::new(),
            start_slot,
        }
    }

    /// The value to show for public aggregate `handle` (`id`, of
    /// `quantity`, `members` readings) whose exact value (from clamped
    /// readings) is now `exact`: a new release if its newest reading is in
    /// a slot after the last released one, `Hold` otherwise.
    pub(crate) fn release(
        &mut self,
        handle: u32,
        id: &str,
        quantity: &str,
        additive: bool,
        members: usize,
        exact: f64,
        device_time_ms: i64,
    ) -> Release {
        let Some(scale) = self.options.scale(quantity, additive, members) else {
            return Release::Withheld;
        };
        let slot = device_time_ms.div_euclid(self.options.slot_ms());
        let last = self
            .released
            .get(&handle)
            .copied()
            .unwrap_or(self.start_slot);
        if slot <= last {
            return Release::Hold;
        }
        self.released.insert(handle, slot);
        Release::Value(exact + self.options.noise(id, slot, scale))
    }

    /// What public aggregate `handle` (`id`, of `quantity`, combined by
    /// `rule`) shows now that its members' latest readings are `readings`:
    /// their clamped combination released with noise, `Hold`, or
    /// `Withheld` (no range for the quantity, or not every member has a
    /// reading yet).
    pub(crate) fn public_value(
        &mut self,
        handle: u32,
        id: &str,
        quantity: &str,
        rule: AggregateRule,
        readings: impl ExactSizeIterator<Item = Option<StoredReading>>,
    ) -> Release<StoredReading> {
        let Some(&(lo, hi)) = self.options.bounds.get(quantity) else {
            return Release::Withheld;
        };
        let members = readings.len();
        let clamped = readings.map(|reading| {
            reading.map(|r| StoredReading {
                value: r.value.clamp(lo, hi),
                ..r
            })
        });
        let Some(exact) = combine(rule, clamped) else {
            return Release::Withheld;
        };
        match self.release(
            handle,
            id,
            quantity,
            rule.additive,
            members,
            exact.value,
            exact.device_time_ms,
        ) {
            Release::Value(value) => Release::Value(StoredReading { value, ..exact }),
            Release::Hold => Release::Hold,
            Release::Withheld => Release::Withheld,
        }
    }
}

/// What a public aggregate shows after a change of its members.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Release<T = f64> {
    /// A new noisy value.
    Value(T),
    /// Keep what it shows (this slot's release is made, or none may be).
    Hold,
    /// No value: its quantity has no clamp range, so no noise can be set.
    Withheld,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> NoiseOptions {
        NoiseOptions {
            epsilon: 1.0,
            window_ms: 3_600_000,
            releases: 4,
            bounds: BTreeMap::from([("active_power".to_owned(), (0.0, 10.0))]),
            key: [7; 32],
        }
    }

    #[test]
    fn the_scale_is_the_sensitivity_over_each_releases_budget() {
        let options = options();
        assert_eq!(options.slot_ms(), 900_000);
        assert_eq!(options.epsilon_per_release(), 0.25);
        // A sum: one household moves it by at most 10 kW; ε 0.25 → 40.
        assert_eq!(options.scale("active_power", true, 5), Some(40.0));
        // A mean over 5: by at most 2.
        assert_eq!(options.scale("active_power", false, 5), Some(8.0));
        assert_eq!(options.scale("flow", true, 5), None);
    }

    #[test]
    fn laplace_noise_has_its_distribution_and_repeats_for_the_same_release() {
        let options = options();
        assert_eq!(
            options.noise("agg-public-a", 3, 40.0),
            options.noise("agg-public-a", 3, 40.0)
        );
        assert_ne!(
            options.noise("agg-public-a", 3, 40.0),
            options.noise("agg-public-a", 4, 40.0)
        );
        assert_ne!(
            options.noise("agg-public-a", 3, 40.0),
            options.noise("agg-public-b", 3, 40.0)
        );
        let other_key = NoiseOptions {
            key: [8; 32],
            ..options.clone()
        };
        assert_ne!(
            options.noise("agg-public-a", 3, 40.0),
            other_key.noise("agg-public-a", 3, 40.0)
        );
        // Over many releases: mean ≈ 0, mean |x| ≈ scale, median |x| ≈
        // scale · ln 2 (Laplace).
        let draws: Vec<f64> = (0..20_000)
            .map(|slot| options.noise("agg", slot, 40.0))
            .collect();
        let n = draws.len() as f64;
        let mean = draws.iter().sum::<f64>() / n;
        let mean_abs = draws.iter().map(|x| x.abs()).sum::<f64>() / n;
        let mut abs: Vec<f64> = draws.iter().map(|x| x.abs()).collect();
        abs.sort_by(f64::total_cmp);
        let median_abs = abs[abs.len() / 2];
        assert!(mean.abs() < 1.5, "{mean}");
        assert!((mean_abs - 40.0).abs() < 1.5, "{mean_abs}");
        assert!((median_abs - 40.0 * 2f64.ln()).abs() < 1.5, "{median_abs}");
        assert!(laplace(0.5, 1.0) == 0.0);
        assert!(laplace(1e-16, 1.0) < -30.0 && laplace(1.0 - 1e-16, 1.0) > 30.0);
    }

    #[test]
    fn one_release_per_slot_none_in_the_start_slot() {
        let slot = 900_000;
        let mut noise = PublicNoise::new(options(), 10 * slot + 5);
        let release = |noise: &mut PublicNoise, exact, time| {
            noise.release(1, "agg", "active_power", true, 5, exact, time)
        };
        // Data of the slot the twin started in (or older): nothing.
        assert_eq!(release(&mut noise, 5.0, 10 * slot + 1), Release::Hold);
        assert_eq!(release(&mut noise, 5.0, 3 * slot), Release::Hold);
        // The next slot: one release, then held for the rest of it.
        let Release::Value(first) = release(&mut noise, 5.0, 11 * slot) else {
            panic!("a release");
        };
        assert_eq!(first, 5.0 + options().noise("agg", 11, 40.0));
        assert_eq!(release(&mut noise, 6.0, 11 * slot + 10), Release::Hold);
        assert!(matches!(
            release(&mut noise, 6.0, 12 * slot),
            Release::Value(_)
        ));
        // A quantity without bounds shows nothing.
        assert_eq!(
            noise.release(2, "agg-flow", "flow", true, 5, 1.0, 20 * slot),
            Release::Withheld
        );
    }
}
