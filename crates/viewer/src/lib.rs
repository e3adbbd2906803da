//! The planners' 3D viewer: connects to a Polis server like `polis watch`,
//! subscribes to the area around the camera, and draws the live city —
//! buildings, roads, water, transit and sensors, coloured by the chosen
//! layer's live values. Clicks are answered by the server's colliders.
//!
//! One plugin ([`ViewerPlugin`]) with named system sets ([`ViewerSystems`]);
//! the connection runs on its own thread with bounded channels ([`link`]).

pub mod camera;
pub mod city;
pub mod colour;
pub mod hud;
pub mod link;
pub mod pick;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bevy::core_pipeline::tonemapping::Tonemapping;
use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured};
use bevy::window::{PresentMode, WindowResolution};
use clap::Parser;
use polis_protocol::{ErrorCode, PickTarget, ServerToViewer};

use crate::camera::{Drag, Orbit, Subscription};
use crate::city::{City, Glide, Look};
use crate::colour::{LAYERS, Palette};
use crate::link::{Link, LinkEvent, LinkState};
use crate::pick::Selection;

/// Command line of `polis-viewer`.
#[derive(Debug, Parser)]
#[command(
    name = "polis-viewer",
    version,
    about = "3D viewer of a live Polis city twin"
)]
pub struct Args {
    /// Server address, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:4433")]
    pub server: String,
    /// The server's certificate (PEM), e.g. `polis-data/tls/cert.pem`.
    #[arg(long, default_value = "polis-data/tls/cert.pem")]
    pub cert: PathBuf,
    /// Access token (or set POLIS_TOKEN), e.g. "$(cat polis-data/operator.token)".
    #[arg(long, env = "POLIS_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Colour layer: energy-load, pv, water-flow, water-pressure, tank-level.
    #[arg(long, default_value = "energy-load")]
    pub layer: String,
    /// Palette: viridis or cividis (both colour-blind safe).
    #[arg(long, default_value = "viridis")]
    pub palette: String,
    /// Start looking at this point, local east,north metres from the scene's origin.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true, num_args = 2)]
    pub look_at: Vec<f32>,
    /// Start at this distance from the point looked at, metres.
    #[arg(long, default_value_t = 900.0)]
    pub distance: f32,
    /// Fly to the asset or sensor with this id once it is in view (and select it),
    /// ending at --distance from it.
    #[arg(long)]
    pub focus: Option<String>,
    /// Receive value updates at most this often, ms: the server sends each
    /// sensor's latest value once per interval (for a thin link); 0, the
    /// default, sends every change at once. Moving the camera is never held
    /// back.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(..=i64::from(polis_protocol::MAX_PUBLISH_INTERVAL_MS)))]
    pub publish_interval_ms: u32,
    /// Window size, WIDTHxHEIGHT pixels.
    #[arg(long, default_value = "1280x720")]
    pub size: String,
    /// Write a PNG screenshot to FILE (repeatable; one per --after) and exit after the last.
    #[arg(long)]
    pub screenshot: Vec<PathBuf>,
    /// Seconds after start at which each --screenshot is taken.
    #[arg(long)]
    pub after: Vec<f32>,
}

/// When the viewer's systems run within `Update`, in this order.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ViewerSystems {
    /// Frames from the server are applied to the city.
    Receive,
    /// Mouse and keyboard move the camera, pick and change the look.
    Input,
    /// The subscription follows the camera; colours and vehicles update.
    Follow,
    /// Status line, legend and panel are redrawn; screenshots taken.
    Present,
}

/// The background: the camera looks down on the city, so the clear colour
/// is the ground (a plane would cost a full-screen lit pass on software
/// renderers for nothing).
const GROUND: Color = Color::srgb(0.15, 0.17, 0.17);

/// DejaVu Sans Mono (see `assets/fonts/README.md` for its licence).
const DEJAVU_SANS_MONO: &[u8] = include_bytes!("../assets/fonts/DejaVuSansMono.ttf");

/// Screenshots still to take, and whether one is being written.
#[derive(Resource, Debug)]
struct Captures {
    queue: Vec<(PathBuf, f32)>,
    busy: Arc<AtomicBool>,
}

/// Asset or sensor id to fly to once it is in view.
#[derive(Resource, Debug, Default)]
struct Focus(Option<String>, f32);

/// The viewer: everything but the window.
pub struct ViewerPlugin {
    link: std::sync::Mutex<Option<Link>>,
    layer: usize,
    palette: Palette,
    start: Orbit,
    focus: Option<String>,
    captures: Vec<(PathBuf, f32)>,
    publish_interval_ms: u32,
}

impl Plugin for ViewerPlugin {
    fn build(&self, app: &mut App) {
        let link = self
            .link
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(link) = link {
            app.insert_resource(link);
        }
        // Place names need more than ASCII: replace Bevy's built-in font.
        let font = bevy::text::Font::from_bytes(DEJAVU_SANS_MONO.to_vec());
        if let Err(err) = app
            .world_mut()
            .resource_mut::<Assets<bevy::text::Font>>()
            .insert(AssetId::default(), font)
        {
            warn!("cannot install the viewer's font: {err}");
        }
        let start = self.start;
        let (layer, palette) = (self.layer, self.palette);
        app.insert_resource(ClearColor(GROUND))
            .init_resource::<City>()
            .insert_resource(Subscription::with_publish_interval(
                self.publish_interval_ms,
            ))
            .init_resource::<Drag>()
            .init_resource::<Selection>()
            .insert_resource(Focus(self.focus.clone(), self.start.distance_m))
            .insert_resource(Captures {
                queue: self.captures.clone(),
                busy: Arc::new(AtomicBool::new(false)),
            })
            .configure_sets(
                Update,
                (
                    ViewerSystems::Receive,
                    ViewerSystems::Input,
                    ViewerSystems::Follow,
                    ViewerSystems::Present,
                )
                    .chain(),
            )
            .add_systems(
                Startup,
                (
                    move |mut commands: Commands,
                          mut meshes: ResMut<Assets<Mesh>>,
                          mut materials: ResMut<Assets<StandardMaterial>>| {
                        commands.insert_resource(Look::new(
                            layer,
                            palette,
                            &mut meshes,
                            &mut materials,
                        ));
                        spawn_world(&mut commands, start);
                    },
                    hud::spawn_hud,
                )
                    .chain(),
            )
            .add_systems(Update, receive.in_set(ViewerSystems::Receive))
            .add_systems(
                Update,
                (
                    camera::control_camera,
                    pick::click_to_pick,
                    pick::fly_to_selection,
                    hud::keys_for_look,
                )
                    .chain()
                    .in_set(ViewerSystems::Input),
            )
            .add_systems(
                Update,
                (
                    camera::follow_camera,
                    recolour,
                    city::glide_vehicles,
                    city::apply_visibility,
                )
                    .in_set(ViewerSystems::Follow),
            )
            .add_systems(
                Update,
                (hud::update_status, hud::update_panel, take_screenshots)
                    .in_set(ViewerSystems::Present),
            );
    }
}

fn spawn_world(commands: &mut Commands, start: Orbit) {
    commands.spawn((
        Camera3d::default(),
        // Colours must stay those of the palette and the legend.
        Tonemapping::None,
        // Multisampling costs most where there is no GPU (software
        // rendering); edges stay readable without it.
        Msaa::Off,
        start.transform(),
        start,
        AmbientLight {
            color: Color::WHITE,
            brightness: 900.0,
            ..default()
        },
    ));
    commands.spawn((
        DirectionalLight {
            illuminance: 6_000.0,
            shadow_maps_enabled: false,
            ..default()
        },
        Transform::from_xyz(300.0, 800.0, 500.0).looking_at(Vec3::ZERO, Vec3::Y),
    ));
}

/// Applies what the connection reports.
fn receive(
    mut link: ResMut<Link>,
    mut city: ResMut<City>,
    mut subscription: ResMut<Subscription>,
    mut selection: ResMut<Selection>,
    mut focus: ResMut<Focus>,
    look: Res<Look>,
    mut commands: Commands,
    mut meshes: ResMut<Assets<Mesh>>,
    mut vehicles: Query<&mut Glide>,
    cameras: Query<Entity, With<Orbit>>,
) {
    // Bounded work per frame keeps the window responsive under a flood.
    for _ in 0..64 {
        let Some(event) = link.try_next() else { break };
        match event {
            LinkEvent::Connecting(attempt) => {
                let last = match &link.state {
                    LinkState::Connecting(_, last) => last.clone(),
                    _ => None,
                };
                link.state = LinkState::Connecting(attempt, last);
            }
            LinkEvent::Connected(welcome) => {
                info!(
                    server = %link.server,
                    scene = %welcome.scene_name,
                    "connected"
                );
                link.state = LinkState::Connected(welcome.scene_name.clone());
                link.welcome = Some(*welcome);
                subscription.reset();
            }
            LinkEvent::Lost(reason) => {
                if !matches!(&link.state, LinkState::Connecting(_, Some(r)) if *r == reason) {
                    warn!("{reason}");
                }
                let attempt = match link.state {
                    LinkState::Connecting(attempt, _) => attempt,
                    _ => 0,
                };
                link.state = LinkState::Connecting(attempt, Some(reason));
                city.reset(&mut commands);
                subscription.reset();
            }
            LinkEvent::Refused(reason) => {
                error!("{reason}");
                link.state = LinkState::Refused(reason);
                city.reset(&mut commands);
            }
            LinkEvent::Frame(frame) => match *frame {
                ServerToViewer::Pick(reply) => {
                    pick::take_pick(reply, &city, &look, &link, &mut selection, &mut commands);
                }
                ServerToViewer::History(reply) => {
                    if Some(reply.sensor) == selection.sparkline_sensor {
                        selection.history = reply.points;
                        selection.changed = true;
                    }
                }
                ServerToViewer::Error(error) => {
                    warn!(code = ?error.code, "server: {}", error.detail);
                    if error.code == ErrorCode::InvalidRequest {
                        // A history or pick request was refused; the panel says why.
                        selection.history_note = Some(format!("server: {}", error.detail));
                        selection.changed = true;
                    }
                }
                frame => {
                    let glides = city.apply(frame, &mut commands, &mut meshes, &look);
                    city::retarget(&glides, &mut vehicles);
                }
            },
        }
    }
    if let Some(id) = focus.0.clone() {
        let target = city
            .assets
            .values()
            .find(|a| a.info.id == id)
            .map(|a| PickTarget::Asset(a.info.handle))
            .or_else(|| {
                city.sensors
                    .values()
                    .find(|s| s.info.id == id)
                    .map(|s| PickTarget::Sensor(s.info.handle))
            });
        if let Some(target) = target {
            if let (Some(at), Ok(camera)) = (pick::target_position(target, &city), cameras.single())
            {
                commands.entity(camera).insert(camera::FlyTo {
                    focus_enu_m: at,
                    distance_m: focus.1,
                });
            }
            pick::select(
                target,
                id,
                &city,
                &look,
                &link,
                &mut selection,
                &mut commands,
            );
            focus.0 = None;
        }
    }
}

fn recolour(
    mut city: ResMut<City>,
    look: Res<Look>,
    selection: Res<Selection>,
    mut commands: Commands,
) {
    let force = look.is_changed();
    city.recolour(&look, &mut commands, selection.entity, force);
}

/// Takes the `--screenshot`s at their times and exits after the last.
fn take_screenshots(time: Res<Time<Real>>, mut captures: ResMut<Captures>, mut commands: Commands) {
    if captures.busy.load(Ordering::SeqCst) {
        return;
    }
    let Some((path, after_s)) = captures.queue.first().cloned() else {
        return;
    };
    if time.elapsed_secs() < after_s {
        return;
    }
    captures.queue.remove(0);
    let busy = Arc::clone(&captures.busy);
    busy.store(true, Ordering::SeqCst);
    let last = captures.queue.is_empty();
    commands.spawn(Screenshot::primary_window()).observe(
        move |captured: On<ScreenshotCaptured>, mut exit: MessageWriter<AppExit>| {
            let written = captured
                .image
                .clone()
                .try_into_dynamic()
                .map_err(|err| err.to_string())
                .and_then(|image| {
                    // Whatever the file name, a PNG without the alpha channel
                    // (which holds no transparency here).
                    image
                        .to_rgb8()
                        .save_with_format(&path, image::ImageFormat::Png)
                        .map_err(|err| err.to_string())
                });
            match written {
                Ok(()) => info!(path = %path.display(), "screenshot written"),
                Err(err) => {
                    error!(path = %path.display(), "cannot write screenshot: {err}");
                    exit.write(AppExit::from_code(2));
                }
            }
            busy.store(false, Ordering::SeqCst);
            if last {
                exit.write(AppExit::Success);
            }
        },
    );
}

fn parse_size(text: &str) -> Option<(u32, u32)> {
    let (w, h) = text.split_once('x')?;
    let (w, h) = (w.trim().parse().ok()?, h.trim().parse().ok()?);
    (w >= 320 && h >= 240 && w <= 8192 && h <= 8192).then_some((w, h))
}

/// Runs the viewer; the exit code is 0 on a normal exit, 2 when it could
/// not start or a screenshot could not be written.
pub fn run() -> ExitCode {
    let args = Args::parse();
    match build(args) {
        Ok(mut app) => match app.run() {
            AppExit::Success => ExitCode::SUCCESS,
            AppExit::Error(code) => ExitCode::from(code.get()),
        },
        Err(message) => {
            eprintln!("polis-viewer: {message}");
            ExitCode::from(2)
        }
    }
}

fn build(args: Args) -> Result<App, String> {
    let layer = colour::layer_by_name(&args.layer).ok_or_else(|| {
        let names: Vec<&str> = LAYERS.iter().map(|l| l.name).collect();
        format!(
            "unknown --layer `{}` (one of {})",
            args.layer,
            names.join(", ")
        )
    })?;
    let palette = match args.palette.as_str() {
        "viridis" => Palette::Viridis,
        "cividis" => Palette::Cividis,
        other => return Err(format!("unknown --palette `{other}` (viridis or cividis)")),
    };
    let (width, height) = parse_size(&args.size)
        .ok_or_else(|| format!("--size `{}`: expected WIDTHxHEIGHT", args.size))?;
    if args.screenshot.len() != args.after.len() {
        return Err("give one --after SECS for each --screenshot FILE".into());
    }
    let mut captures: Vec<(PathBuf, f32)> = args.screenshot.into_iter().zip(args.after).collect();
    captures.sort_by(|a, b| a.1.total_cmp(&b.1));
    let focus_enu_m = match args.look_at[..] {
        [east, north] => Vec2::new(east, north),
        _ => Vec2::ZERO,
    };
    let start = Orbit {
        focus_enu_m,
        yaw_rad: 0.35,
        pitch_rad: 0.75,
        distance_m: args.distance.clamp(40.0, 8_000.0),
    };
    let link = Link::start(link::options(&args.server, &args.cert, &args.token))
        .map_err(|err| format!("cannot start the network thread: {err}"))?;
    let mut app = App::new();
    app.add_plugins(DefaultPlugins.set(WindowPlugin {
        primary_window: Some(Window {
            title: "Polis — city twin".into(),
            resolution: WindowResolution::new(width, height),
            present_mode: PresentMode::AutoVsync,
            ..default()
        }),
        ..default()
    }))
    .add_plugins(ViewerPlugin {
        link: std::sync::Mutex::new(Some(link)),
        layer,
        palette,
        start,
        focus: args.focus,
        publish_interval_ms: args.publish_interval_ms,
        captures,
    });
    Ok(app)
}
