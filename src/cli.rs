//! The command line: `serve`, `token`, `demo-city` (../shared/CONTRACT.md), and `vapid`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::app::{self, Options};
use crate::domain::dispatcher::State;
use crate::domain::incidents::first_offers;
use crate::domain::response::{Level, Rules};
use crate::gateway::auth::{Claims, Role, TokenKeys};
use crate::settings::{LogFormat, Settings, is_development_secret};

#[derive(Debug, Parser)]
#[command(name = "muster", version, about = "Emergency mobilization dispatcher")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the server.
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on (overrides server.listen), e.g. 127.0.0.1:0.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data directory (overrides server.data_dir).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Load the demo city on first start and print a token per role.
        #[arg(long)]
        demo: bool,
        /// Members in the demo city.
        #[arg(long, hide = true)]
        demo_members: Option<usize>,
    },
    /// Print a signed token.
    Token {
        #[arg(long)]
        role: Role,
        #[arg(long)]
        district: Option<String>,
        #[arg(long)]
        community: Option<String>,
        #[arg(long)]
        unit: Option<String>,
        #[arg(long)]
        member: Option<String>,
        /// Lifetime: 3600, 90s, 30m, 12h or 7d (default: auth.token_ttl_s).
        #[arg(long)]
        ttl: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write the demo city as the JSON document PUT /v1/city takes.
    DemoCity {
        #[arg(long, default_value_t = crate::demo::DEFAULT_MEMBERS)]
        members: usize,
        #[arg(long, default_value_t = crate::demo::DEFAULT_SEED)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a new VAPID key pair for Web Push: the private key (push.vapid_private_key)
    /// on the first line, the public key on the second.
    Vapid,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::gateway::auth::parse_role(s)
    }
}

/// Parses `3600`, `90s`, `30m`, `12h`, `7d` into seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a duration like 3600, 90s, 30m, 12h or 7d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("'{s}': the unit must be s, m, h or d")),
    };
    match n.checked_mul(mult) {
        Some(v) if v > 0 => Ok(v),
        _ => Err(format!("'{s}' is not a positive duration")),
    }
}

fn now_s() -> u64 {
    crate::engine::now_ms() as u64 / 1000
}

pub fn init_tracing(settings: &Settings) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log.filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match settings.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Serve { config, listen, data, demo, demo_members } => {
            let mut settings = Settings::load(config.as_deref())?;
            if let Some(l) = listen {
                settings.server.listen = l;
            }
            if let Some(d) = data {
                settings.server.data_dir = d;
            }
            init_tracing(&settings);
            if is_development_secret(&settings.auth.secret) && !demo {
                bail!(
                    "auth.secret is the development secret, accepted only with --demo; \
                     set MUSTER_AUTH__SECRET or auth.secret in a --config file"
                );
            }
            let keys = TokenKeys::new(&settings.auth.secret);
            let ttl = settings.auth.token_ttl_s;
            let kept = settings.clone();
            let app = app::build(settings, Options { demo, demo_members }).await?;
            println!("listening on http://{}", app.addr);
            if demo {
                let people = demo_people(&app.engine.read(), &app.engine.rules);
                print_demo_tokens(&app.engine.read(), &people, &keys, ttl, app.addr);
                print_demo_links(&app.engine, &kept, &people, app.addr).await;
            }
            let stop = app.shutdown.clone();
            tokio::spawn(async move {
                app::shutdown_signal().await;
                tracing::info!("shutting down");
                stop.cancel();
            });
            app.run_until_stopped().await
        }
        Cmd::Token { role, district, community, unit, member, ttl, config } => {
            let settings = Settings::load(config.as_deref())?;
            let ttl = match ttl {
                Some(t) => parse_duration(&t).map_err(anyhow::Error::msg)?,
                None => settings.auth.token_ttl_s,
            };
            let scope = match role {
                Role::Command => district,
                Role::Staff => community,
                Role::UnitAdmin => unit,
                Role::Member => member,
                Role::Resident => anyhow::bail!("residents sign in with a code to their phone, at /r#<community>"),
            };
            let claims = Claims::new(role, scope, now_s(), ttl).map_err(anyhow::Error::msg)?;
            println!("{}", TokenKeys::new(&settings.auth.secret).sign(&claims));
            Ok(())
        }
        Cmd::Vapid => {
            let (private, public) = crate::push::vapid::generate();
            println!("{private}\n{public}");
            eprintln!(
                "set MUSTER_PUSH__VAPID_PRIVATE_KEY (or push.vapid_private_key) to the first line; keep it secret"
            );
            Ok(())
        }
        Cmd::DemoCity { members, seed, out } => {
            let city = crate::demo::demo_city(members, seed);
            let json = serde_json::to_string(&city)?;
            std::fs::write(&out, json).with_context(|| format!("writing {}", out.display()))?;
            eprintln!(
                "wrote {} ({} members, {} communities)",
                out.display(),
                city.members.len(),
                city.communities.len()
            );
            Ok(())
        }
    }
}

/// The demo's people, one per role, chosen so they fit together: the member lives in the
/// staff's community, on call, in an assault team. (label, role, scope id)
type People = Vec<(&'static str, Role, Option<String>)>;

/// The README's example call: a patrol at level III for two people in the printed grid.
const README_CALL: (&str, Level, u32) = ("patrol", Level::III, 2);

/// The demo's member (every other person is chosen around them): the first on call in a
/// team who would be offered the README's example call raised in their own residence grid,
/// so the walkthrough's member is among those offered; else the first on call in a team.
fn demo_member(state: &State, rules: &Rules) -> usize {
    let members = state.city.members();
    let on_call = |i: &usize| state.roster.members[*i].on_call && members[*i].team_id.is_some();
    let (category, level, headcount) = README_CALL;
    let now = crate::engine::now_ms();
    let offered = |i: &usize| {
        let grid = state.city.member_residence[*i];
        first_offers(state, rules, grid, category, level, headcount, now).contains(&(*i as u32))
    };
    // Bounded: a few hundred searches at start-up, a few milliseconds each at most.
    (0..members.len()).filter(on_call).take(500).find(offered).or_else(|| (0..members.len()).find(on_call)).unwrap_or(0)
}

fn demo_people(state: &State, rules: &Rules) -> People {
    let Some(city) = state.city.city() else { return Vec::new() };
    let member_idx = demo_member(state, rules);
    let member = &city.members[member_idx];
    let grid = state.city.member_residence[member_idx];
    let place = state.city.grid_places[grid as usize];
    let community = &city.communities[place.community as usize];
    let district = &city.districts[place.district as usize];
    vec![
        ("command (city)", Role::Command, None),
        ("command (district)", Role::Command, Some(district.id.clone())),
        ("staff", Role::Staff, Some(community.id.clone())),
        ("unit_admin", Role::UnitAdmin, Some(member.unit_id.clone())),
        ("member", Role::Member, Some(member.id.clone())),
    ]
}

/// One sign-in link per person (one-time, valid `auth.invitation_max_ttl_s`), made as
/// invitations through the engine at every start: a click instead of a pasted token.
async fn print_demo_links(
    engine: &crate::engine::EngineHandle,
    settings: &Settings,
    people: &People,
    addr: SocketAddr,
) {
    // The actor a token of this role and scope stands for, as the tokens printed beside.
    let actor = |role: Role, id: &Option<String>| {
        Claims::new(role, id.clone(), 0, 1)
            .and_then(|c| c.actor().map_err(str::to_string))
            .expect("demo scopes are complete")
    };
    let base = if settings.auth.public_url.is_empty() {
        format!("http://{addr}")
    } else {
        settings.auth.public_url.trim_end_matches('/').to_string()
    };
    let invitees = people.iter().map(|(_, role, id)| actor(*role, id)).collect();
    match crate::gateway::access::demo_links(engine, settings, &base, invitees).await {
        Ok(links) => {
            for ((label, _, id), link) in people.iter().zip(links) {
                let id = id.as_ref().map(|s| format!(" {s}")).unwrap_or_default();
                println!("sign-in link {label}{id}: {link}");
            }
        }
        Err(e) => eprintln!("the demo's sign-in links could not be made: {}", e.detail),
    }
}

/// One token per person of the demo.
fn print_demo_tokens(state: &State, people: &People, keys: &TokenKeys, ttl: u64, addr: SocketAddr) {
    let Some(city) = state.city.city() else { return };
    let Some(member_idx) =
        people.iter().find(|p| p.1 == Role::Member).and_then(|p| p.2.as_ref()).and_then(|id| state.member_index(id))
    else {
        return;
    };
    let member_idx = member_idx as usize;
    let member = &city.members[member_idx];
    let grid = state.city.member_residence[member_idx];
    let place = state.city.grid_places[grid as usize];
    let community = &city.communities[place.community as usize];
    let now = now_s();
    println!("demo city: {} communities, {} members", city.communities.len(), city.members.len());
    println!(
        "staff community {} ({}), grid {}; member {} ({})",
        community.id, community.name, member.residence_grid_id, member.id, member.name
    );
    for (label, role, scope) in people {
        let claims = Claims::new(*role, scope.clone(), now, ttl).expect("demo scopes are complete");
        let scope = scope.as_ref().map(|s| format!(" {s}")).unwrap_or_default();
        println!("token {label}{scope}: {}", keys.sign(&claims));
    }
    println!("try: curl -H \"Authorization: Bearer $TOKEN\" http://{addr}/v1/catalog");
}
