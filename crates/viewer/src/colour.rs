//! Colour layers, colour-blind-safe palettes and value ranges.

/// A quantity the city can be coloured by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColourLayer {
    /// Name in the legend and on the command line.
    pub name: &'static str,
    /// The sensors' `quantity` it shows.
    pub quantity: &'static str,
}

/// The layers, in the order `L` cycles through them.
pub const LAYERS: [ColourLayer; 5] = [
    ColourLayer {
        name: "energy-load",
        quantity: "active_power",
    },
    ColourLayer {
        name: "pv",
        quantity: "pv_power",
    },
    ColourLayer {
        name: "water-flow",
        quantity: "flow",
    },
    ColourLayer {
        name: "water-pressure",
        quantity: "pressure",
    },
    ColourLayer {
        name: "tank-level",
        quantity: "level",
    },
];

/// The layer with this name.
pub fn layer_by_name(name: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.name == name)
}

/// Perceptually uniform palettes readable with the common colour-vision
/// deficiencies (from matplotlib's viridis and cividis, 9 stops, sRGB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Palette {
    /// Dark blue to yellow through green.
    Viridis,
    /// Dark blue to yellow through grey; safe also for blue-yellow deficiencies.
    Cividis,
}

const VIRIDIS: [[u8; 3]; 9] = [
    [68, 1, 84],
    [71, 45, 123],
    [59, 82, 139],
    [44, 114, 142],
    [33, 145, 140],
    [40, 174, 128],
    [94, 201, 98],
    [173, 220, 48],
    [253, 231, 37],
];

const CIVIDIS: [[u8; 3]; 9] = [
    [0, 34, 78],
    [35, 52, 110],
    [71, 71, 107],
    [102, 92, 107],
    [124, 123, 120],
    [153, 147, 114],
    [186, 172, 101],
    [220, 200, 76],
    [254, 232, 56],
];

impl Palette {
    /// Name for the legend.
    pub fn name(self) -> &'static str {
        match self {
            Palette::Viridis => "viridis",
            Palette::Cividis => "cividis",
        }
    }

    /// The other palette.
    pub fn next(self) -> Palette {
        match self {
            Palette::Viridis => Palette::Cividis,
            Palette::Cividis => Palette::Viridis,
        }
    }

    /// sRGB colour at `t` in [0, 1] (clamped), linearly between stops.
    pub fn srgb(self, t: f32) -> [f32; 3] {
        let stops = match self {
            Palette::Viridis => &VIRIDIS,
            Palette::Cividis => &CIVIDIS,
        };
        let t = if t.is_finite() {
            t.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let x = t * (stops.len() - 1) as f32;
        let i = (x.floor() as usize).min(stops.len() - 2);
        let f = x - i as f32;
        let (a, b) = (stops[i], stops[i + 1]);
        [0, 1, 2].map(|k| (f32::from(a[k]) * (1.0 - f) + f32::from(b[k]) * f) / 255.0)
    }
}

/// Steps a value range is drawn with: values map to one of this many
/// colours, so assets share materials and the legend shows exact colours.
pub const STEPS: usize = 16;

/// The range the legend spans for the values in view: from the 2nd to the
/// 98th percentile (so one outlier does not wash out the rest), widened to a
/// non-empty interval.
pub fn value_range(values: &[f64]) -> Option<(f64, f64)> {
    let mut values: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    let (mut low, mut high) = (at(0.02), at(0.98));
    if high - low < 1e-9 {
        let pad = (low.abs() * 0.05).max(0.5);
        low -= pad;
        high += pad;
    }
    Some((low, high))
}

/// The colour step (0..STEPS) of `value` within `range`.
pub fn step_of(value: f64, (low, high): (f64, f64)) -> usize {
    let t = ((value - low) / (high - low)).clamp(0.0, 1.0);
    ((t * STEPS as f64) as usize).min(STEPS - 1)
}

/// Middle of a step as a palette position.
pub fn step_position(step: usize) -> f32 {
    (step as f32 + 0.5) / STEPS as f32
}

/// A number for the legend: three significant digits, no exponent for the
/// usual magnitudes.
pub fn format_value(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 || magnitude == 0.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palettes_run_from_dark_to_light_monotonically() {
        for palette in [Palette::Viridis, Palette::Cividis] {
            let luminance = |t: f32| {
                let [r, g, b] = palette.srgb(t);
                0.2126 * r + 0.7152 * g + 0.0722 * b
            };
            let mut previous = -1.0;
            for i in 0..=20 {
                let l = luminance(i as f32 / 20.0);
                assert!(l > previous, "{palette:?} not monotonic at {i}");
                previous = l;
            }
            assert_eq!(palette.srgb(-1.0), palette.srgb(0.0));
            assert_eq!(palette.srgb(f32::NAN), palette.srgb(0.0));
        }
    }

    #[test]
    fn one_outlier_does_not_flatten_the_range() {
        let mut values: Vec<f64> = (0..100).map(f64::from).collect();
        values.push(1e9);
        values.push(f64::NAN);
        let range = value_range(&values).expect("a range");
        assert!(range.1 < 200.0, "{range:?}");
        assert_eq!(step_of(0.0, range), 0);
        assert_eq!(step_of(1e9, range), STEPS - 1);
        assert_eq!(value_range(&[]), None);
        let flat = value_range(&[3.0, 3.0]).expect("a range");
        assert!(flat.0 < 3.0 && flat.1 > 3.0);
    }

    #[test]
    fn layers_are_found_by_name() {
        assert_eq!(layer_by_name("pv"), Some(1));
        assert_eq!(layer_by_name("nope"), None);
        assert_eq!(format_value(1234.5), "1234");
        assert_eq!(format_value(0.25), "0.250");
    }
}
