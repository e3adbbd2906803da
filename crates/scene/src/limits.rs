//! Bounds on what one scene item may hold. They keep every asset and
//! sensor within one protocol frame (a viewer's snapshot or pick never has
//! to leave an item out) and its shape cheap to prepare for picking. Real
//! cities sit far inside them: the bundled Helsinki scene's longest id is
//! 28 bytes, its largest footprint 109 points and its longest line 182.

use polis_protocol::MAX_FRAME_BYTES;

/// Longest asset or sensor id, bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Longest sensor quantity or unit name, bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Most attributes of one asset.
pub const MAX_ATTRIBUTES: usize = 64;
/// Longest attribute key, bytes.
pub const MAX_ATTRIBUTE_KEY_BYTES: usize = 128;
/// Longest attribute value, bytes.
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1_024;
/// Most points of a building footprint.
pub const MAX_FOOTPRINT_VERTICES: usize = 4_096;
/// Most points of a line (road, pipe, route).
pub const MAX_LINE_VERTICES: usize = 32_768;

/// An upper bound of one asset's size on the wire, bytes: its id, its
/// attributes (each string with a length prefix of up to 10 bytes) and its
/// points as two `f32`s each, with room for the fixed fields.
pub const MAX_ASSET_WIRE_BYTES: usize = MAX_ID_BYTES
    + MAX_ATTRIBUTES * (MAX_ATTRIBUTE_KEY_BYTES + MAX_ATTRIBUTE_VALUE_BYTES + 20)
    + MAX_LINE_VERTICES * 8
    + 1_024;

// Every asset the format accepts fits in one frame, with room for others.
const _: () = assert!(MAX_ASSET_WIRE_BYTES < MAX_FRAME_BYTES / 2);
