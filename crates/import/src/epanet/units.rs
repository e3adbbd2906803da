//! EPANET flow units and the unit system they imply.

/// The flow units of an EPANET file (`[OPTIONS] Units`). They also decide
/// the other units: US flow units imply feet (lengths, elevations, heads),
/// inches (pipe diameters) and horsepower; SI flow units imply metres,
/// millimetres and kilowatts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowUnits {
    /// Cubic feet per second (US).
    Cfs,
    /// US gallons per minute (US; the EPANET default).
    Gpm,
    /// Million US gallons per day (US).
    Mgd,
    /// Million imperial gallons per day (US).
    Imgd,
    /// Acre-feet per day (US).
    Afd,
    /// Litres per second (SI).
    Lps,
    /// Litres per minute (SI).
    Lpm,
    /// Megalitres per day (SI).
    Mld,
    /// Cubic metres per hour (SI).
    Cmh,
    /// Cubic metres per day (SI).
    Cmd,
}

impl FlowUnits {
    /// Every unit, US ones first.
    pub const ALL: [FlowUnits; 10] = [
        FlowUnits::Cfs,
        FlowUnits::Gpm,
        FlowUnits::Mgd,
        FlowUnits::Imgd,
        FlowUnits::Afd,
        FlowUnits::Lps,
        FlowUnits::Lpm,
        FlowUnits::Mld,
        FlowUnits::Cmh,
        FlowUnits::Cmd,
    ];

    /// The name as written in `.inp` files: `GPM`, `LPS`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            FlowUnits::Cfs => "CFS",
            FlowUnits::Gpm => "GPM",
            FlowUnits::Mgd => "MGD",
            FlowUnits::Imgd => "IMGD",
            FlowUnits::Afd => "AFD",
            FlowUnits::Lps => "LPS",
            FlowUnits::Lpm => "LPM",
            FlowUnits::Mld => "MLD",
            FlowUnits::Cmh => "CMH",
            FlowUnits::Cmd => "CMD",
        }
    }

    /// Parses a name, ignoring case; `None` for anything else.
    pub fn from_name(name: &str) -> Option<FlowUnits> {
        FlowUnits::ALL
            .into_iter()
            .find(|u| u.as_str().eq_ignore_ascii_case(name))
    }

    /// True for the US customary units (feet, inches).
    pub fn is_us(self) -> bool {
        matches!(
            self,
            FlowUnits::Cfs | FlowUnits::Gpm | FlowUnits::Mgd | FlowUnits::Imgd | FlowUnits::Afd
        )
    }

    /// Litres per second in one flow unit.
    pub fn litres_per_second(self) -> f64 {
        match self {
            FlowUnits::Cfs => 28.316_846_592,
            FlowUnits::Gpm => 0.063_090_196_4,
            FlowUnits::Mgd => 43.812_636_4,
            FlowUnits::Imgd => 52.616_782_4,
            FlowUnits::Afd => 14.276_410_5,
            FlowUnits::Lps => 1.0,
            FlowUnits::Lpm => 1.0 / 60.0,
            FlowUnits::Mld => 1e6 / 86_400.0,
            FlowUnits::Cmh => 1000.0 / 3600.0,
            FlowUnits::Cmd => 1000.0 / 86_400.0,
        }
    }

    /// Metres in one unit of length, elevation, head or level (foot or
    /// metre).
    pub fn metres_per_length_unit(self) -> f64 {
        if self.is_us() { 0.3048 } else { 1.0 }
    }

    /// Millimetres in one unit of pipe diameter (inch or millimetre).
    pub fn millimetres_per_diameter_unit(self) -> f64 {
        if self.is_us() { 25.4 } else { 1.0 }
    }

    /// Kilowatts in one unit of pump power (horsepower or kilowatt).
    pub fn kilowatts_per_power_unit(self) -> f64 {
        if self.is_us() { 0.745_699_872 } else { 1.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for unit in FlowUnits::ALL {
            assert_eq!(FlowUnits::from_name(unit.as_str()), Some(unit));
        }
        assert_eq!(FlowUnits::from_name("gpm"), Some(FlowUnits::Gpm));
        assert_eq!(FlowUnits::from_name("furlongs"), None);
    }

    #[test]
    fn unit_systems() {
        assert!(FlowUnits::Gpm.is_us());
        assert!(!FlowUnits::Lps.is_us());
        assert_eq!(FlowUnits::Gpm.metres_per_length_unit(), 0.3048);
        assert_eq!(FlowUnits::Cmh.millimetres_per_diameter_unit(), 1.0);
        assert!((FlowUnits::Gpm.litres_per_second() * 15.850_32 - 1.0).abs() < 1e-6);
    }
}
