//! A deterministic generator of a Wuhan-like demo city.
//!
//! [`demo_city`] builds a complete [`City`], ready for `PUT /v1/city`, shaped after the
//! figures in the Hubei report: the 13 districts of Wuhan (from
//! `assets/wuhan-districts.json`), 38 streets, 188 communities laid out as real H3 cells
//! around each district seat, 212 provincial units with one work team each and 312
//! emergency assault teams, and as many members as asked for (the default 20,000 puts
//! exactly 16,000 in assault teams, as in August 2021).
//!
//! Layout: every community is one resolution-8 H3 cell, taken in order of grid distance
//! from its district seat's resolution-8 cell and never shared between districts; its
//! area is that cell's seven resolution-9 children, split into three contiguous grids
//! (3 + 2 + 2 cells).
//!
//! Everything random is drawn from one `ChaCha8Rng` seeded with `seed`, in a fixed order,
//! so the same `(members, seed)` always gives the same city: demos, benchmarks and tests
//! can name a city by its two numbers instead of shipping a large JSON file.

use std::collections::HashSet;
use std::f64::consts::TAU;

use h3o::{CellIndex, LatLng, Resolution};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use crate::domain::geo::{Cell, MATCH_RES, Position};
use crate::domain::org::{City, Community, District, Grid, Member, Street, Team, TeamKind, Unit};

/// The 13 districts of Wuhan with their seats and a `core` flag, plus the response levels.
pub const DISTRICTS_JSON: &str = include_str!("../assets/wuhan-districts.json");

/// Skill ids and their Chinese labels; members of the demo city carry 1–3 of the ids.
pub const SKILLS: &[(&str, &str)] = &[
    ("medical", "医疗救护"),
    ("sampling", "核酸采样"),
    ("driving", "驾驶"),
    ("mediation", "矛盾调解"),
    ("elderly_care", "助老服务"),
    ("logistics", "物资保障"),
    ("electrician", "电工"),
    ("psychology", "心理疏导"),
];

/// The member count the report's figures suggest (16,000 of them in assault teams).
pub const DEFAULT_MEMBERS: usize = 20_000;
/// The seed of the city `serve --demo` loads (the year of the Delta surge).
pub const DEFAULT_SEED: u64 = 2021;

const CORE_STREETS: usize = 4;
const OUTER_STREETS: usize = 2;
const CORE_COMMUNITIES: usize = 20;
const OUTER_COMMUNITIES: usize = 8;
const UNITS: usize = 212;
/// Units 1..=100 field two assault teams, the rest one: 312 in all.
const UNITS_WITH_TWO_ASSAULT_TEAMS: usize = 100;
/// Communities are resolution-8 cells; their grids are made of the resolution-9 children.
const COMMUNITY_RES: Resolution = Resolution::Eight;
const GRIDS_PER_COMMUNITY: usize = 3;
/// How far a member's position may stray from the centre of their residence cell.
const JITTER_M: f64 = 60.0;
const METRES_PER_DEGREE_LAT: f64 = 111_320.0;
const SAME_DISTRICT_RESIDENCE_P: f64 = 0.5;
const ON_CALL_ASSAULT_P: f64 = 0.6;
const ON_CALL_WORK_P: f64 = 0.25;

#[derive(Deserialize)]
struct DistrictsFile {
    city: CityHeader,
    districts: Vec<DistrictEntry>,
}

#[derive(Deserialize)]
struct CityHeader {
    name: String,
}

#[derive(Deserialize)]
struct DistrictEntry {
    name: String,
    seat: Position,
    core: bool,
}

/// Street names per district, in the order of `wuhan-districts.json`.
const STREET_NAMES: &[&[&str]] = &[
    &["大智街道", "一元街道", "车站街道", "四唯街道"],
    &["民族街道", "花楼街道", "水塔街道", "民权街道"],
    &["古田街道", "韩家墩街道", "宗关街道", "汉水桥街道"],
    &["建桥街道", "鹦鹉街道", "洲头街道", "晴川街道"],
    &["积玉桥街道", "杨园街道", "徐家棚街道", "粮道街道"],
    &["红卫路街道", "冶金街道", "新沟桥街道", "红钢城街道"],
    &["珞南街道", "关山街道", "狮子山街道", "张家湾街道"],
    &["吴家山街道", "将军路街道"],
    &["纱帽街道", "东荆街道"],
    &["蔡甸街道", "奓山街道"],
    &["纸坊街道", "金口街道"],
    &["前川街道", "滠口街道"],
    &["邾城街道", "阳逻街道"],
];

#[rustfmt::skip]
const COMMUNITY_PREFIXES: &[&str] = &[
    "幸福", "和平", "建设", "友谊", "新华", "民主", "长青", "百步亭", "花桥", "后湖", "惠民",
    "永安", "丹水池", "球场", "台北", "黄浦", "汉兴", "常青", "宝丰", "琴台", "首义", "中南",
    "东亭", "南湖", "卓刀泉", "珞珈", "白沙洲", "紫阳", "复兴", "育才", "光明",
];
const COMMUNITY_SUFFIXES: &[&str] = &["", "里", "苑", "新村", "花园", "路", "东", "西", "南", "北"];

/// Provincial departments and agencies; names are reused with a number once exhausted.
const UNIT_NAMES: &[&str] = &[
    "湖北省委办公厅",
    "湖北省人民政府办公厅",
    "湖北省委组织部",
    "湖北省委宣传部",
    "湖北省委统战部",
    "湖北省委政法委",
    "湖北省纪委监委",
    "湖北省发展和改革委员会",
    "湖北省教育厅",
    "湖北省科学技术厅",
    "湖北省经济和信息化厅",
    "湖北省民族宗教事务委员会",
    "湖北省公安厅",
    "湖北省民政厅",
    "湖北省司法厅",
    "湖北省财政厅",
    "湖北省人力资源和社会保障厅",
    "湖北省自然资源厅",
    "湖北省生态环境厅",
    "湖北省住房和城乡建设厅",
    "湖北省交通运输厅",
    "湖北省水利厅",
    "湖北省农业农村厅",
    "湖北省商务厅",
    "湖北省文化和旅游厅",
    "湖北省卫生健康委员会",
    "湖北省退役军人事务厅",
    "湖北省应急管理厅",
    "湖北省审计厅",
    "湖北省人民政府外事办公室",
    "湖北省人民政府国有资产监督管理委员会",
    "湖北省市场监督管理局",
    "湖北省广播电视局",
    "湖北省体育局",
    "湖北省统计局",
    "湖北省地方金融管理局",
    "湖北省医疗保障局",
    "湖北省林业局",
    "湖北省机关事务管理局",
    "湖北省信访局",
    "湖北省粮食和物资储备局",
    "湖北省能源局",
    "湖北省监狱管理局",
    "湖北省药品监督管理局",
    "湖北省知识产权局",
    "湖北省中医药管理局",
    "湖北省人民防空办公室",
    "湖北省数据局",
    "湖北省乡村振兴局",
    "湖北省税务局",
    "湖北省气象局",
    "湖北省通信管理局",
    "湖北省邮政管理局",
    "湖北省地震局",
    "湖北省档案局",
    "湖北省总工会",
    "湖北省妇女联合会",
    "湖北省科学技术协会",
];

#[rustfmt::skip]
const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "高", "林", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾",
    "肖", "田", "董", "袁", "潘", "余", "蒋", "蔡", "杜", "叶", "程", "苏", "魏", "吕", "丁", "任",
    "沈", "姚", "卢", "姜", "钟", "谭", "陆", "汪", "范", "金", "石", "廖", "夏", "付", "方", "邹",
    "熊", "秦", "江", "雷", "龚", "万", "严", "向", "汤", "覃", "喻", "涂", "柯", "舒", "闵", "鲁",
];
#[rustfmt::skip]
const GIVEN_CHARS: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀", "霞", "平", "刚", "桂", "英", "华", "玉", "兰", "萍", "红", "鹏", "辉", "建", "国",
    "文", "斌", "宇", "浩", "凯", "婷", "雪", "琳", "晨", "欣", "怡", "子", "轩", "梓", "涵", "博",
    "晓", "海", "波", "志", "宏", "春", "云", "慧", "丹", "亮", "健", "峰", "飞", "俊", "帆", "思",
    "佳", "嘉", "颖", "蕾", "楚", "汉", "江", "珞",
];

const CHINESE_DIGITS: &[&str] = &["一", "二", "三", "四", "五", "六", "七", "八", "九", "十"];

/// One community as laid out, before it becomes a [`Community`].
struct Placed {
    district: usize,
    grids: Vec<Vec<Cell>>,
}

/// Generates the demo city: 13 districts, 38 streets, 188 communities (564 grids),
/// 212 units, 212 work + 312 assault teams and `members` members, of whom
/// `members * 4 / 5` are in assault teams. Deterministic in `(members, seed)`.
///
/// `CityIndex::build` accepts the result for any `members`, including 0.
pub fn demo_city(members: usize, seed: u64) -> City {
    let file: DistrictsFile = serde_json::from_str(DISTRICTS_JSON).expect("assets/wuhan-districts.json is valid");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    // Districts, streets and community layout.
    let mut districts = Vec::with_capacity(file.districts.len());
    let mut streets = Vec::new();
    let mut communities = Vec::new();
    let mut placed: Vec<Placed> = Vec::new();
    let mut communities_of_district: Vec<Vec<usize>> = Vec::with_capacity(file.districts.len());
    let mut used_res8: HashSet<CellIndex> = HashSet::new();
    for (di, d) in file.districts.iter().enumerate() {
        let district_id = format!("d{:02}", di + 1);
        districts.push(District { id: district_id.clone(), name: d.name.clone(), seat: d.seat });

        let (n_streets, n_communities) =
            if d.core { (CORE_STREETS, CORE_COMMUNITIES) } else { (OUTER_STREETS, OUTER_COMMUNITIES) };
        let first_street = streets.len();
        for si in 0..n_streets {
            streets.push(Street {
                id: format!("s{:02}{:02}", di + 1, si + 1),
                name: street_name(di, si, &d.name),
                district_id: district_id.clone(),
            });
        }

        let mut mine = Vec::with_capacity(n_communities);
        for (j, parent) in nearest_free_cells(d.seat, n_communities, &mut used_res8).into_iter().enumerate() {
            let ci = communities.len();
            let id = format!("c{:03}", ci + 1);
            let cells = split_into_grids(parent);
            let grids = cells
                .iter()
                .enumerate()
                .map(|(gi, cells)| Grid { id: format!("{id}-g{}", gi + 1), cells: cells.clone() })
                .collect();
            // Contiguous blocks of communities per street, as even as the counts allow.
            let street = first_street + j * n_streets / n_communities;
            communities.push(Community { id, name: community_name(ci), street_id: streets[street].id.clone(), grids });
            placed.push(Placed { district: di, grids: cells });
            mine.push(ci);
        }
        communities_of_district.push(mine);
    }
    let n_communities = communities.len();

    // Units and their teams, paired with communities round-robin: the assault teams first
    // (312 >= 188, so every community gets one), the work teams continuing the same
    // rotation so the communities holding two assault teams are the last to get a second
    // work team.
    let n_assault_total: usize = (0..UNITS).map(assault_teams_of_unit).sum();
    let mut units = Vec::with_capacity(UNITS);
    let mut teams = Vec::with_capacity(UNITS + n_assault_total);
    // per team: (paired community index, is assault, ordinal among teams of its kind)
    let mut team_info: Vec<(usize, bool, usize)> = Vec::with_capacity(UNITS + n_assault_total);
    let (mut n_assault, mut n_work) = (0usize, 0usize);
    for ui in 0..UNITS {
        let unit_id = format!("u{:03}", ui + 1);
        let unit_name = unit_name(ui);
        let mut push_team = |name: String, kind: TeamKind, community: usize, ordinal: usize| {
            teams.push(Team {
                id: format!("t{:04}", teams.len() + 1),
                name,
                unit_id: unit_id.clone(),
                kind,
                community_id: communities[community].id.clone(),
            });
            team_info.push((community, kind == TeamKind::Assault, ordinal));
        };
        let work_community = (n_assault_total + n_work) % n_communities;
        push_team(format!("{unit_name}工作队"), TeamKind::Work, work_community, n_work);
        n_work += 1;
        let k = assault_teams_of_unit(ui);
        for a in 0..k {
            let name = if k == 1 {
                format!("{unit_name}突击队")
            } else {
                format!("{unit_name}突击{}队", CHINESE_DIGITS[a % CHINESE_DIGITS.len()])
            };
            push_team(name, TeamKind::Assault, n_assault % n_communities, n_assault);
            n_assault += 1;
        }
        units.push(Unit { id: unit_id, name: unit_name });
    }

    // Members, team by team: assault teams share members*4/5, work teams the rest, each
    // as evenly as possible (sizes differ by at most one).
    let assault_members = members * 4 / 5;
    let work_members = members - assault_members;
    // (there is always at least one team of each kind: the counts are constants)
    let share = |total: usize, teams: usize, ordinal: usize| total / teams + usize::from(ordinal < total % teams);
    let mut out = Vec::with_capacity(members);
    for (ti, &(paired, assault, ordinal)) in team_info.iter().enumerate() {
        let size =
            if assault { share(assault_members, n_assault, ordinal) } else { share(work_members, n_work, ordinal) };
        for _ in 0..size {
            let residence = if rng.gen_bool(SAME_DISTRICT_RESIDENCE_P) {
                let near = &communities_of_district[placed[paired].district];
                near[rng.gen_range(0..near.len())]
            } else {
                rng.gen_range(0..n_communities)
            };
            let gi = rng.gen_range(0..placed[residence].grids.len());
            let grid_cells = &placed[residence].grids[gi];
            let cell = grid_cells[rng.gen_range(0..grid_cells.len())];
            let position = jittered(cell, &mut rng);
            let name = person_name(&mut rng);
            let skills = pick_skills(&mut rng);
            let on_call = rng.gen_bool(if assault { ON_CALL_ASSAULT_P } else { ON_CALL_WORK_P });
            out.push(Member {
                id: format!("m{:05}", out.len() + 1),
                name,
                unit_id: teams[ti].unit_id.clone(),
                team_id: Some(teams[ti].id.clone()),
                residence_grid_id: communities[residence].grids[gi].id.clone(),
                skills,
                position,
                on_call,
                // 99.5% have reported at their residence community, as in the report
                registered: out.len() % 200 != 199,
            });
        }
    }
    debug_assert_eq!(out.len(), members);

    City { name: file.city.name, districts, streets, communities, units, teams, members: out }
}

fn assault_teams_of_unit(ui: usize) -> usize {
    if ui < UNITS_WITH_TWO_ASSAULT_TEAMS { 2 } else { 1 }
}

fn street_name(district: usize, street: usize, district_name: &str) -> String {
    match STREET_NAMES.get(district).and_then(|s| s.get(street)) {
        Some(name) => (*name).to_string(),
        None => format!("{}第{}街道", district_name.trim_end_matches('区'), street + 1),
    }
}

fn community_name(ci: usize) -> String {
    let p = COMMUNITY_PREFIXES.len();
    let prefix = COMMUNITY_PREFIXES[ci % p];
    let round = ci / p;
    match COMMUNITY_SUFFIXES.get(round) {
        Some(suffix) => format!("{prefix}{suffix}社区"),
        None => format!("{prefix}{}社区", round + 1),
    }
}

fn unit_name(ui: usize) -> String {
    let base = UNIT_NAMES[ui % UNIT_NAMES.len()];
    match ui / UNIT_NAMES.len() {
        0 => base.to_string(),
        round => format!("{base}（{}）", round + 1),
    }
}

fn person_name(rng: &mut ChaCha8Rng) -> String {
    let mut name = String::with_capacity(9);
    name.push_str(SURNAMES[rng.gen_range(0..SURNAMES.len())]);
    let given = if rng.gen_bool(0.35) { 1 } else { 2 };
    for _ in 0..given {
        name.push_str(GIVEN_CHARS[rng.gen_range(0..GIVEN_CHARS.len())]);
    }
    name
}

/// 1 to 3 distinct skill ids, in `SKILLS` order.
fn pick_skills(rng: &mut ChaCha8Rng) -> Vec<String> {
    let k = rng.gen_range(1..=3usize).min(SKILLS.len());
    let mut idx: Vec<usize> = (0..SKILLS.len()).collect();
    for i in 0..k {
        let j = rng.gen_range(i..idx.len());
        idx.swap(i, j);
    }
    let mut chosen = idx[..k].to_vec();
    chosen.sort_unstable();
    chosen.into_iter().map(|i| SKILLS[i].0.to_string()).collect()
}

/// The `count` resolution-8 cells nearest (in grid distance) to the seat's own cell that
/// no earlier district has taken; ties are broken by cell index so the order is stable.
fn nearest_free_cells(seat: Position, count: usize, used: &mut HashSet<CellIndex>) -> Vec<CellIndex> {
    let origin = LatLng::new(seat.lat, seat.lng).expect("seat is a valid position").to_cell(COMMUNITY_RES);
    let mut k = 1;
    loop {
        let mut disk: Vec<(CellIndex, u32)> = origin.grid_disk_distances(k);
        disk.sort_unstable_by_key(|&(c, d)| (d, u64::from(c)));
        let free: Vec<CellIndex> = disk.into_iter().map(|(c, _)| c).filter(|c| !used.contains(c)).take(count).collect();
        if free.len() == count {
            used.extend(free.iter().copied());
            return free;
        }
        k += 1;
    }
}

/// A resolution-8 cell's resolution-9 children as three contiguous grids: the centre
/// child with its first two ring neighbours, then the ring in pairs (going round by angle).
fn split_into_grids(parent: CellIndex) -> Vec<Vec<Cell>> {
    let centre = parent.center_child(MATCH_RES).expect("resolution 9 is finer than 8");
    let c = LatLng::from(centre);
    let angle = |x: &CellIndex| {
        let p = LatLng::from(*x);
        (p.lat() - c.lat()).atan2((p.lng() - c.lng()) * c.lat().to_radians().cos())
    };
    let mut ring: Vec<CellIndex> = parent.children(MATCH_RES).filter(|&x| x != centre).collect();
    ring.sort_by(|a, b| angle(a).total_cmp(&angle(b)));
    let cells: Vec<Cell> = std::iter::once(centre).chain(ring).map(Cell).collect();

    let n = cells.len();
    let mut grids = Vec::with_capacity(GRIDS_PER_COMMUNITY);
    let mut start = 0;
    for g in 0..GRIDS_PER_COMMUNITY {
        let size = n / GRIDS_PER_COMMUNITY + usize::from(g < n % GRIDS_PER_COMMUNITY);
        grids.push(cells[start..start + size].to_vec());
        start += size;
    }
    grids
}

/// The cell's centre moved up to `JITTER_M` metres in a random direction, rounded to
/// 1e-7 degrees (~1 cm) so the position survives a JSON round trip bit for bit, and kept
/// only if it still falls in the same cell (it always should: a resolution-9 cell's
/// inscribed circle is ~150 m across); otherwise the (rounded) centre.
fn jittered(cell: Cell, rng: &mut ChaCha8Rng) -> Position {
    let centre = cell.center();
    let r = JITTER_M * rng.gen_range(0.0..1.0f64).sqrt();
    let theta = rng.gen_range(0.0..TAU);
    let lat = centre.lat + r * theta.cos() / METRES_PER_DEGREE_LAT;
    let lng = centre.lng + r * theta.sin() / (METRES_PER_DEGREE_LAT * centre.lat.to_radians().cos());
    [(lat, lng), (centre.lat, centre.lng)]
        .into_iter()
        .filter_map(|(lat, lng)| Position::new(round7(lat), round7(lng)).ok())
        .find(|p| p.cell() == cell)
        .unwrap_or(centre)
}

fn round7(x: f64) -> f64 {
    (x * 1e7).round() / 1e7
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;
    use crate::domain::org::CityIndex;

    fn default_city() -> City {
        demo_city(DEFAULT_MEMBERS, 42)
    }

    #[test]
    fn default_city_has_the_reports_shape() {
        let city = default_city();
        assert_eq!(city.name, "武汉市");
        assert_eq!(city.districts.len(), 13);
        assert_eq!(city.districts[0].id, "d01");
        assert_eq!(city.districts[0].name, "江岸区");
        assert_eq!(city.streets.len(), 7 * 4 + 6 * 2);
        assert!(city.streets.iter().all(|s| s.name.ends_with("街道")));
        assert!(city.communities.len() >= 180, "{}", city.communities.len());
        assert!(city.communities.iter().all(|c| c.grids.len() == 3));
        assert!(city.units.len() >= 200);
        let units: HashSet<&str> = city.units.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(units.len(), city.units.len(), "unit names are unique");
        let assault = city.teams.iter().filter(|t| t.kind == TeamKind::Assault).count();
        let work = city.teams.iter().filter(|t| t.kind == TeamKind::Work).count();
        assert_eq!((assault, work), (312, 212));
        assert_eq!(city.members.len(), 20_000);
    }

    #[test]
    fn default_city_builds() {
        let idx = CityIndex::build(default_city()).expect("demo city validates");
        assert_eq!(idx.grid_places.len(), 188 * 3);
    }

    #[test]
    fn members_are_split_four_fifths_into_assault_teams_evenly() {
        let city = default_city();
        let kind: HashMap<&str, TeamKind> = city.teams.iter().map(|t| (t.id.as_str(), t.kind)).collect();
        let mut sizes: HashMap<&str, usize> = city.teams.iter().map(|t| (t.id.as_str(), 0)).collect();
        for m in &city.members {
            *sizes.get_mut(m.team_id.as_deref().unwrap()).unwrap() += 1;
        }
        let assault_total: usize = sizes.iter().filter(|(t, _)| kind[*t] == TeamKind::Assault).map(|(_, n)| n).sum();
        assert_eq!(assault_total, 16_000);
        for k in [TeamKind::Assault, TeamKind::Work] {
            let s: Vec<usize> = sizes.iter().filter(|(t, _)| kind[*t] == k).map(|(_, n)| *n).collect();
            let (lo, hi) = (s.iter().min().unwrap(), s.iter().max().unwrap());
            assert!(hi - lo <= 1, "{k:?}: {lo}..{hi}");
        }
    }

    #[test]
    fn every_community_is_paired_with_an_assault_and_a_work_team() {
        let city = default_city();
        for k in [TeamKind::Assault, TeamKind::Work] {
            let paired: HashSet<&str> =
                city.teams.iter().filter(|t| t.kind == k).map(|t| t.community_id.as_str()).collect();
            assert_eq!(paired.len(), city.communities.len(), "{k:?}");
        }
    }

    #[test]
    fn members_are_consistent_and_live_where_they_are_registered() {
        let city = default_city();
        let skill_ids: HashSet<&str> = SKILLS.iter().map(|s| s.0).collect();
        let team_unit: HashMap<&str, &str> = city.teams.iter().map(|t| (t.id.as_str(), t.unit_id.as_str())).collect();
        let idx = CityIndex::build(city.clone()).unwrap();
        let mut on_call = 0;
        for (i, m) in city.members.iter().enumerate() {
            assert_eq!(team_unit[m.team_id.as_deref().unwrap()], m.unit_id);
            assert!((1..=3).contains(&m.skills.len()), "{:?}", m.skills);
            let distinct: HashSet<&str> = m.skills.iter().map(String::as_str).collect();
            assert_eq!(distinct.len(), m.skills.len());
            assert!(distinct.is_subset(&skill_ids));
            assert_eq!(idx.grid_at(m.position), Some(idx.member_residence[i]), "{}", m.id);
            assert!(m.position.distance_m(m.position.cell().center()) <= JITTER_M + 1.0);
            on_call += usize::from(m.on_call);
        }
        // 0.6 * 16000 + 0.25 * 4000 = 10600
        assert!((10_200..11_000).contains(&on_call), "{on_call}");
    }

    #[test]
    fn about_half_live_in_their_paired_district() {
        let city = default_city();
        let idx = CityIndex::build(city.clone()).unwrap();
        let same = (0..city.members.len())
            .filter(|&i| {
                let home = idx.grid_places[idx.member_residence[i] as usize].district;
                let paired = idx.member_paired_community[i].unwrap();
                idx.district_id_of_community(paired) == city.districts[home as usize].id
            })
            .count();
        // 50% forced + 50% * (share of a random community in that district, ~8%)
        let frac = same as f64 / city.members.len() as f64;
        assert!((0.5..0.6).contains(&frac), "{frac}");
    }

    #[test]
    fn communities_sit_near_their_district_seat() {
        let city = default_city();
        let idx = CityIndex::build(city.clone()).unwrap();
        for (ci, c) in city.communities.iter().enumerate() {
            let d = &city.districts[idx.district_by_id[idx.district_id_of_community(ci as u32)] as usize];
            let dist = idx.community_centers[ci].distance_m(d.seat);
            assert!(dist < 8_000.0, "{} is {dist} m from {}", c.id, d.name);
        }
    }

    #[test]
    fn is_deterministic_in_members_and_seed() {
        assert_eq!(demo_city(2_000, 7), demo_city(2_000, 7));
        assert_ne!(demo_city(2_000, 7), demo_city(2_000, 8));
    }

    #[test]
    fn a_small_city_builds_too() {
        let city = demo_city(300, 1);
        assert_eq!(city.members.len(), 300);
        assert_eq!(city.members.iter().filter(|m| m.id.starts_with('m')).count(), 300);
        CityIndex::build(city).expect("small demo city validates");
        CityIndex::build(demo_city(0, 1)).expect("empty demo city validates");
    }

    #[test]
    fn the_city_round_trips_as_json_exactly() {
        // Positions are rounded to 1e-7 degrees, so even serde_json's default (not
        // correctly rounding) float parser gives back the very same f64s.
        let city = demo_city(5_000, 3);
        let json = serde_json::to_string(&city).unwrap();
        let back: City = serde_json::from_str(&json).unwrap();
        assert_eq!(back, city);
    }
}
