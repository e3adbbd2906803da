//! What the viewer writes on screen: the status line, the help line, the
//! legend of the colour layer, and the panel of the selection.

use bevy::prelude::*;
use polis_protocol::PickTarget;

use crate::city::{City, Group, Look};
use crate::colour::{self, LAYERS, STEPS};
use crate::link::{Link, LinkState};
use crate::pick::Selection;

/// The status line.
#[derive(Component)]
pub struct StatusLine;

/// The legend's title and range labels.
#[derive(Component)]
pub enum LegendText {
    /// Layer name and unit.
    Title,
    /// Lowest value.
    Low,
    /// Highest value.
    High,
}

/// One colour swatch of the legend.
#[derive(Component)]
pub struct Swatch(usize);

/// The selection panel.
#[derive(Component)]
pub struct Panel;

/// The help line (lists the groups shown).
#[derive(Component)]
pub struct HelpLine;

const TEXT: Color = Color::srgb(0.95, 0.95, 0.95);
const SHADE: Color = Color::srgba(0.05, 0.06, 0.08, 0.78);

fn font(size: f32) -> TextFont {
    TextFont {
        font_size: bevy::text::FontSize::Px(size),
        ..default()
    }
}

fn boxed(node: Node) -> (Node, BackgroundColor) {
    (
        Node {
            padding: UiRect::all(Val::Px(6.0)),
            ..node
        },
        BackgroundColor(SHADE),
    )
}

/// Spawns the overlay.
pub fn spawn_hud(mut commands: Commands, look: Res<Look>) {
    commands
        .spawn(boxed(Node {
            position_type: PositionType::Absolute,
            left: Val::Px(8.0),
            bottom: Val::Px(8.0),
            right: Val::Px(8.0),
            ..default()
        }))
        .with_child((
            Text::new("starting"),
            font(15.0),
            TextColor(TEXT),
            StatusLine,
        ));
    commands
        .spawn(boxed(Node {
            position_type: PositionType::Absolute,
            left: Val::Px(8.0),
            top: Val::Px(8.0),
            max_width: Val::Px(560.0),
            ..default()
        }))
        .with_child((
            Text::new(help_text(&look)),
            font(13.0),
            TextColor(TEXT),
            HelpLine,
        ));
    commands
        .spawn(boxed(Node {
            position_type: PositionType::Absolute,
            right: Val::Px(8.0),
            top: Val::Px(8.0),
            flex_direction: FlexDirection::Column,
            row_gap: Val::Px(4.0),
            ..default()
        }))
        .with_children(|legend| {
            legend.spawn((
                Text::new(""),
                font(15.0),
                TextColor(TEXT),
                LegendText::Title,
            ));
            legend
                .spawn(Node {
                    flex_direction: FlexDirection::Row,
                    ..default()
                })
                .with_children(|bar| {
                    for s in 0..STEPS {
                        let [r, g, b] = look.palette.srgb(colour::step_position(s));
                        bar.spawn((
                            Node {
                                width: Val::Px(14.0),
                                height: Val::Px(16.0),
                                ..default()
                            },
                            BackgroundColor(Color::srgb(r, g, b)),
                            Swatch(s),
                        ));
                    }
                });
            legend
                .spawn(Node {
                    flex_direction: FlexDirection::Row,
                    justify_content: JustifyContent::SpaceBetween,
                    ..default()
                })
                .with_children(|labels| {
                    labels.spawn((Text::new(""), font(13.0), TextColor(TEXT), LegendText::Low));
                    labels.spawn((Text::new(""), font(13.0), TextColor(TEXT), LegendText::High));
                });
        });
    commands.spawn((
        Node {
            position_type: PositionType::Absolute,
            left: Val::Px(8.0),
            top: Val::Px(96.0),
            width: Val::Px(380.0),
            flex_direction: FlexDirection::Column,
            row_gap: Val::Px(4.0),
            padding: UiRect::all(Val::Px(6.0)),
            display: Display::None,
            ..default()
        },
        BackgroundColor(SHADE),
        Panel,
    ));
}

fn help_text(look: &Look) -> String {
    let groups: Vec<String> = Group::ALL
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let mark = if look.hidden.contains(g) { "off" } else { "on" };
            format!("{} {} {mark}", i + 1, g.name())
        })
        .collect();
    format!(
        "drag: pan | right-drag / Q E R F: orbit | wheel / + -: zoom | WASD: move | click: pick | G: fly to pick\n\
         L: layer | P: palette ({}) | {}",
        look.palette.name(),
        groups.join(" | ")
    )
}

/// Keys: `L` next colour layer, `P` other palette, 1–5 toggle groups.
pub fn keys_for_look(
    keys: Res<ButtonInput<KeyCode>>,
    mut look: ResMut<Look>,
    mut city: ResMut<City>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    mut swatches: Query<(&Swatch, &mut BackgroundColor)>,
    mut help: Query<&mut Text, With<HelpLine>>,
) {
    let mut changed = false;
    if keys.just_pressed(KeyCode::KeyL) {
        look.layer = (look.layer + 1) % LAYERS.len();
        city.touch();
        changed = true;
    }
    if keys.just_pressed(KeyCode::KeyP) {
        let next = look.palette.next();
        look.set_palette(next, &mut materials);
        for (swatch, mut colour) in &mut swatches {
            let [r, g, b] = next.srgb(colour::step_position(swatch.0));
            colour.0 = Color::srgb(r, g, b);
        }
        changed = true;
    }
    let digits = [
        KeyCode::Digit1,
        KeyCode::Digit2,
        KeyCode::Digit3,
        KeyCode::Digit4,
        KeyCode::Digit5,
    ];
    for (key, group) in digits.iter().zip(Group::ALL) {
        if keys.just_pressed(*key) {
            if let Some(i) = look.hidden.iter().position(|g| *g == group) {
                look.hidden.remove(i);
            } else {
                look.hidden.push(group);
            }
            changed = true;
        }
    }
    if changed && let Ok(mut text) = help.single_mut() {
        text.0 = help_text(&look);
    }
}

/// Rewrites the status line and the legend a few times a second.
pub fn update_status(
    time: Res<Time<Real>>,
    mut since_s: Local<f32>,
    mut frames: Local<u32>,
    link: Res<Link>,
    look: Res<Look>,
    mut city: ResMut<City>,
    mut status: Query<&mut Text, With<StatusLine>>,
    mut legend: Query<(&LegendText, &mut Text), Without<StatusLine>>,
) {
    *since_s += time.delta_secs();
    *frames += 1;
    if *since_s < 0.5 {
        return;
    }
    city.values_per_s = city.values_since_sample as f64 / f64::from(*since_s);
    city.values_since_sample = 0;
    let connection = match &link.state {
        LinkState::Connecting(attempt, None) => {
            format!("connecting to {} (attempt {attempt})", link.server)
        }
        LinkState::Connecting(attempt, Some(error)) => {
            format!("{error} - retrying (attempt {attempt})")
        }
        LinkState::Connected(scene) => format!("connected to {} | {scene}", link.server),
        LinkState::Refused(reason) => format!("refused: {reason}"),
    };
    let line = format!(
        "{connection} | {} assets, {} sensors in view{} | {:.0} updates/s | {:.0} fps",
        city.assets.len(),
        city.sensors.len(),
        if city.complete || city.assets.is_empty() {
            ""
        } else {
            " (loading)"
        },
        city.values_per_s,
        *frames as f32 / *since_s,
    );
    *frames = 0;
    *since_s = 0.0;
    if let Ok(mut text) = status.single_mut() {
        text.0 = line;
    }
    let layer = LAYERS[look.layer];
    for (which, mut text) in &mut legend {
        text.0 = match (which, city.range) {
            (LegendText::Title, _) if city.unit.is_empty() => layer.name.to_owned(),
            (LegendText::Title, _) => format!("{} ({})", layer.name, city.unit),
            (LegendText::Low, Some((low, _))) => colour::format_value(low),
            (LegendText::High, Some((_, high))) => colour::format_value(high),
            (LegendText::Low, None) => "no values in view".into(),
            (LegendText::High, None) => String::new(),
        };
    }
}

/// Redraws the selection panel when it changed, and twice a second while
/// something is selected (values move).
pub fn update_panel(
    time: Res<Time>,
    mut since_s: Local<f32>,
    mut selection: ResMut<Selection>,
    city: Res<City>,
    look: Res<Look>,
    mut commands: Commands,
    mut panels: Query<(Entity, &mut Node), With<Panel>>,
) {
    *since_s += time.delta_secs();
    let due = selection.target.is_some() && *since_s > 0.5;
    if !(selection.changed || due) {
        return;
    }
    *since_s = 0.0;
    selection.changed = false;
    let Ok((panel, mut node)) = panels.single_mut() else {
        return;
    };
    commands.entity(panel).despawn_related::<Children>();
    let mut lines: Vec<String> = Vec::new();
    if let Some(note) = &selection.note {
        lines.push(note.clone());
    }
    let mut sensors: Vec<u32> = Vec::new();
    match &selection.target {
        Some((PickTarget::Asset(h), id)) => match city.assets.get(h) {
            Some(view) => {
                lines.push(format!("{} {id}", view.info.kind.as_str()));
                if let Some(height) = view.info.height_m {
                    lines.push(format!("height: {height:.0} m"));
                }
                for (key, value) in view.info.attributes.iter().take(8) {
                    lines.push(format!("{key}: {value}"));
                }
                sensors.extend(view.sensors.iter().copied());
            }
            None => lines.push(format!("{id} (outside the area in view)")),
        },
        Some((PickTarget::Sensor(h), id)) => {
            lines.push(format!("sensor {id}"));
            sensors.push(*h);
        }
        None => {}
    }
    for handle in sensors.iter().take(6) {
        let Some(sensor) = city.sensors.get(handle) else {
            continue;
        };
        let value = sensor.latest.map_or_else(
            || "no reading yet".to_owned(),
            |v| format!("{} {}", colour::format_value(v.value), sensor.info.unit),
        );
        let personal = if sensor.info.personal {
            " (personal)"
        } else {
            ""
        };
        lines.push(format!(
            "{} - {}: {value}{personal}",
            sensor.info.id, sensor.info.quantity
        ));
    }
    node.display = if lines.is_empty() {
        Display::None
    } else {
        Display::Flex
    };
    let series: Vec<f64> = if selection.history.is_empty() {
        selection
            .sparkline_sensor
            .and_then(|s| city.sensors.get(&s))
            .map(|s| s.recent.iter().map(|(_, v)| *v).collect())
            .unwrap_or_default()
    } else {
        selection.history.iter().map(|p| p.value).collect()
    };
    let caption = if selection.history.is_empty() {
        "recent values (live)"
    } else {
        "last 6 h (mean per 10 min)"
    };
    commands.entity(panel).with_children(|p| {
        p.spawn((Text::new(lines.join("\n")), font(13.0), TextColor(TEXT)));
        if series.len() >= 2 {
            let range = colour::value_range(&series).unwrap_or((0.0, 1.0));
            p.spawn((
                Text::new(format!(
                    "{caption}: {} .. {}",
                    colour::format_value(range.0),
                    colour::format_value(range.1)
                )),
                font(12.0),
                TextColor(TEXT),
            ));
            p.spawn(Node {
                flex_direction: FlexDirection::Row,
                align_items: AlignItems::FlexEnd,
                height: Val::Px(44.0),
                column_gap: Val::Px(1.0),
                ..default()
            })
            .with_children(|bars| {
                let width = (360.0 / series.len() as f32 - 1.0).clamp(1.0, 12.0);
                for value in &series {
                    let t = ((value - range.0) / (range.1 - range.0)).clamp(0.0, 1.0) as f32;
                    let [r, g, b] = look.palette.srgb(t);
                    bars.spawn((
                        Node {
                            width: Val::Px(width),
                            height: Val::Px(4.0 + 40.0 * t),
                            ..default()
                        },
                        BackgroundColor(Color::srgb(r, g, b)),
                    ));
                }
            });
        }
        if let Some(note) = &selection.history_note {
            p.spawn((Text::new(note.clone()), font(12.0), TextColor(TEXT)));
        }
    });
}
