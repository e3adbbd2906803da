//! EPANET water networks (`.inp` files): parsing, and placing them in a
//! scene.

mod network;
mod parse;
mod place;
mod units;

pub use network::{
    EpanetJunction, EpanetNetwork, EpanetPipe, EpanetPump, EpanetReservoir, EpanetTank, EpanetValve,
};
pub use parse::{parse_epanet, parse_epanet_str};
pub use place::{EpanetPlacement, add_epanet};
pub use units::FlowUnits;
