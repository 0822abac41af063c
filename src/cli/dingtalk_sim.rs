//! `dingbind dingtalk-sim`: the simulator as a command.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::sim::generate::GenSpec;
use crate::sim::{Error, Faults, OrgFile, Simulator, World};

/// Default address: loopback, a fixed port so scripts and docs can rely on it.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8089";

/// Arguments of `dingbind dingtalk-sim`.
#[derive(Clone, Debug, clap::Args)]
pub struct SimArgs {
    /// Organizations to serve (YAML or JSON, see docs/simulator.md).
    #[arg(long, value_name = "FILE")]
    pub org: Option<PathBuf>,
    /// Also generate a large org, e.g. `departments=2000,users=100000,seed=7`
    /// (corp `dinggen`, agentId 1001, appKey `gen-key`, appSecret `gen-secret`;
    /// users are made on demand, so millions fit in little memory). Repeat it
    /// for more orgs: the second is `dinggen2` (`gen-key2`, `gen-secret2`), and so on.
    #[arg(long, value_name = "SPEC")]
    pub generate: Vec<String>,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Life of access tokens, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 7200)]
    pub token_ttl: u64,
    /// Calls per second per app per API before throttling (0 = unlimited).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub qps: u32,
    /// Make tokens, request ids and injected failures repeat from run to run
    /// (by default they differ between simulators, as DingTalk's do).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

/// Builds the world the arguments describe.
pub fn load_world(args: &SimArgs) -> Result<World, Error> {
    let file = match &args.org {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            OrgFile::parse(&text).map_err(|source| Error::Parse {
                path: path.clone(),
                source,
            })?
        }
        None => OrgFile::default(),
    };
    let mut world = World::from_file(file)?;
    for (i, spec) in args.generate.iter().enumerate() {
        let spec: GenSpec = spec.parse().map_err(Error::Spec)?;
        let suffix = if i == 0 {
            String::new()
        } else {
            (i + 1).to_string()
        };
        world.put_generated(spec, &suffix)?;
    }
    Ok(world)
}

/// Serves until Ctrl-C. Prints `dingtalk-sim listening on http://ADDR` on
/// stdout once ready.
pub async fn run(args: SimArgs) -> Result<(), Error> {
    let world = load_world(&args)?;
    let faults = Faults {
        token_ttl_seconds: args.token_ttl,
        throttle_qps: args.qps,
        ..Faults::default()
    };
    let handle = Simulator::start_seeded(world, faults, args.listen, args.seed).await?;
    println!("dingtalk-sim listening on {}", handle.url());
    crate::signal::shutdown().await;
    handle.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn args(org: Option<PathBuf>, generate: Option<&str>) -> SimArgs {
        SimArgs {
            org,
            generate: generate.into_iter().map(Into::into).collect(),
            listen: DEFAULT_LISTEN.parse().unwrap(),
            token_ttl: 7200,
            qps: 20,
            seed: None,
        }
    }

    #[test]
    fn world_comes_from_the_org_file_and_the_generator() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "corps:\n  - corpId: dingacme\n    name: ACME\n    users:\n      - {{userid: u1, name: A, deptIds: [1]}}").unwrap();
        let world = load_world(&args(
            Some(file.path().to_owned()),
            Some("departments=10,users=20,seed=1"),
        ))
        .unwrap();
        assert_eq!(
            world.corps.keys().collect::<Vec<_>>(),
            vec!["dingacme", "dinggen"]
        );
        assert_eq!(world.corps["dinggen"].user_count(), 20);
    }

    #[test]
    fn bad_inputs_are_reported_with_their_cause() {
        assert!(matches!(
            load_world(&args(Some("/nonexistent.yaml".into()), None)),
            Err(Error::Read { .. })
        ));
        assert!(matches!(
            load_world(&args(None, Some("departments=many"))),
            Err(Error::Spec(_))
        ));
    }
}
