//! Chaining the ways of a route into one path.

/// A route path as node ids, and how many gaps it has.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Chain {
    /// Node ids in travel order.
    pub(crate) nodes: Vec<i64>,
    /// Number of places where a way does not start where the path so far
    /// ends.
    pub(crate) gaps: usize,
}

/// Chains ways, in member order, into one path: each way is appended in the
/// direction that continues from the end so far (reversed when needed). A
/// closed way (a roundabout) is followed in its own direction from where
/// the path enters it to the node where the next way leaves it. A way that
/// does not connect is still appended, in the direction whose start is
/// nearer the end so far, and counted as a gap. `position` gives the
/// east/north position of a node, `None` when it is not known.
pub(crate) fn chain_ways(ways: &[&[i64]], position: &dyn Fn(i64) -> Option<[f64; 2]>) -> Chain {
    let ways: Vec<&[i64]> = ways.iter().copied().filter(|w| w.len() >= 2).collect();
    let mut chain = Chain::default();
    for (index, way) in ways.iter().enumerate() {
        let next = ways.get(index + 1).copied();
        let Some(&end) = chain.nodes.last() else {
            chain.nodes = orient_first(way, next);
            continue;
        };
        if is_closed(way) && way.contains(&end) {
            chain.nodes.extend(walk_ring(way, end, next));
        } else if way.first() == Some(&end) {
            chain.nodes.extend(way.iter().skip(1));
        } else if way.last() == Some(&end) {
            chain.nodes.extend(way.iter().rev().skip(1));
        } else {
            chain.gaps += 1;
            let forward = match (position(end), way.first(), way.last()) {
                (Some(at), Some(&first), Some(&last)) => match (position(first), position(last)) {
                    (Some(a), Some(b)) => dist2(at, a) <= dist2(at, b),
                    _ => true,
                },
                _ => true,
            };
            if forward {
                chain.nodes.extend(way.iter());
            } else {
                chain.nodes.extend(way.iter().rev());
            }
        }
    }
    chain.nodes.dedup();
    chain
}

fn is_closed(way: &[i64]) -> bool {
    way.len() > 2 && way.first() == way.last()
}

/// The first way, reversed when its start (and not its end) touches the
/// next way.
fn orient_first(way: &[i64], next: Option<&[i64]>) -> Vec<i64> {
    let touches = |node: Option<&i64>| match (node, next) {
        (Some(node), Some(next)) => next.contains(node),
        _ => false,
    };
    let mut out = way.to_vec();
    if !is_closed(way) && touches(way.first()) && !touches(way.last()) {
        out.reverse();
    }
    out
}

/// The nodes of the closed way after `entry`, in the way's direction, up
/// to the first node the next way shares (the whole ring back to `entry`
/// when it shares none).
fn walk_ring(ring: &[i64], entry: i64, next: Option<&[i64]>) -> Vec<i64> {
    // The ring without its closing repeat.
    let open = ring.get(..ring.len().saturating_sub(1)).unwrap_or_default();
    let Some(start) = open.iter().position(|&n| n == entry) else {
        return Vec::new();
    };
    let exits = |node: i64| {
        next.is_some_and(|next| next.first() == Some(&node) || next.last() == Some(&node))
    };
    let mut out = Vec::new();
    for step in 1..=open.len() {
        let Some(&node) = open.get((start + step) % open.len()) else {
            break;
        };
        out.push(node);
        if exits(node) {
            break;
        }
    }
    out
}

fn dist2(a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(id: i64) -> Option<[f64; 2]> {
        Some([id as f64, 0.0])
    }

    #[test]
    fn reverses_ways_to_connect() {
        let a: &[i64] = &[3, 2, 1];
        let b: &[i64] = &[3, 4];
        let c: &[i64] = &[6, 5, 4];
        let chain = chain_ways(&[a, b, c], &at);
        assert_eq!(chain.nodes, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(chain.gaps, 0);
    }

    #[test]
    fn follows_a_roundabout_to_the_exit() {
        let approach: &[i64] = &[1, 10];
        let roundabout: &[i64] = &[10, 11, 12, 13, 10];
        let exit: &[i64] = &[12, 20];
        let chain = chain_ways(&[approach, roundabout, exit], &at);
        assert_eq!(chain.nodes, vec![1, 10, 11, 12, 20]);
        assert_eq!(chain.gaps, 0);
    }

    #[test]
    fn counts_gaps_and_orients_by_distance() {
        let a: &[i64] = &[1, 2];
        let b: &[i64] = &[9, 5];
        let chain = chain_ways(&[a, b], &at);
        assert_eq!(chain.nodes, vec![1, 2, 5, 9]);
        assert_eq!(chain.gaps, 1);
    }
}
