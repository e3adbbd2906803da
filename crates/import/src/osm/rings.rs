//! Assembling closed rings from the member ways of a multipolygon.

/// Rings joined from ways, as node-id sequences.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Rings {
    /// Closed rings; each repeats its first node at the end.
    pub(crate) closed: Vec<Vec<i64>>,
    /// Number of chains of ways that could not be closed.
    pub(crate) unclosed: usize,
}

/// Joins ways end-to-end (reversing them when needed) into closed rings.
/// Ways with fewer than two nodes are ignored.
pub(crate) fn assemble_rings(ways: &[&[i64]]) -> Rings {
    let mut unused: Vec<&[i64]> = ways.iter().copied().filter(|w| w.len() >= 2).collect();
    let mut rings = Rings::default();
    while !unused.is_empty() {
        let mut ring: Vec<i64> = unused.remove(0).to_vec();
        let mut closed = false;
        while let (Some(&first), Some(&last)) = (ring.first(), ring.last()) {
            if first == last && ring.len() > 1 {
                closed = true;
                break;
            }
            let next = unused
                .iter()
                .position(|w| w.first() == Some(&last) || w.last() == Some(&last));
            let Some(index) = next else {
                break;
            };
            let way = unused.remove(index);
            if way.first() == Some(&last) {
                ring.extend(way.iter().skip(1));
            } else {
                ring.extend(way.iter().rev().skip(1));
            }
        }
        if closed {
            rings.closed.push(ring);
        } else {
            rings.unclosed += 1;
        }
    }
    rings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_ways_in_any_direction() {
        let a: &[i64] = &[1, 2, 3];
        let b: &[i64] = &[5, 4, 3];
        let c: &[i64] = &[5, 1];
        let rings = assemble_rings(&[a, b, c]);
        assert_eq!(rings.closed, vec![vec![1, 2, 3, 4, 5, 1]]);
        assert_eq!(rings.unclosed, 0);
    }

    #[test]
    fn separate_rings_and_open_chains() {
        let closed: &[i64] = &[1, 2, 3, 1];
        let open: &[i64] = &[7, 8, 9];
        let single: &[i64] = &[4];
        let rings = assemble_rings(&[closed, open, single]);
        assert_eq!(rings.closed, vec![vec![1, 2, 3, 1]]);
        assert_eq!(rings.unclosed, 1);
    }
}
