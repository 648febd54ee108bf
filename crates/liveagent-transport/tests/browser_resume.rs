//! A conversation survives the instance that held it, end to end: two real app processes
//! (this test binary re-run as `app_instance`: an actix-web app serving the browser
//! transport, its agent recording into a Redis store with `LiveAgentBuilder::store`) share
//! one real `redis-server` and sit behind a tiny TCP "load balancer" (the first upstream
//! that accepts a connection gets it). Headless Chromium loads the page through it, its fake
//! microphone speaking a WAV; the page talks to instance A. A is killed with SIGKILL
//! mid-answer (one case) and mid-tool-call (the other); the page's socket drops, it
//! reconnects with its resume token, lands on instance B, which loads the conversation
//! from Redis, restores it into a new provider session, and the user goes on talking.
//! Asserted on the frames the provider (the local realtime server) received from B's
//! session: the history replayed, the in-flight tool call answered exactly once.
//!
//! Needs Debian's `chromium`, `chromium-driver` and `redis-server` (`scripts/setup.sh`).

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use liveagent::{openai, LiveAgent, Tool, ToolError};
use liveagent_server::{LocalServer, Pacing, Scenario, ServerConfig};
use liveagent_store::acceptance::RedisServer;
use liveagent_store::{
    ConversationId, ConversationState, ConversationStore, HistoryRecord, RedisConversationStore,
};
use liveagent_transport::BrowserTransport;
use serde_json::{json, Value};
use support::{serve, write_wav, City, FAILSAFE};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const APP_VAR: &str = "LIVEAGENT_RESUME_APP";

/// Tests here share the machine's two cores: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The mid-tool-call case: A's tool never returns (A dies while it runs).
const TOOL_SCENARIO: &str = r#"
[[turn]]
call = "lookup_weather"
args = { city = "Paris" }
then_say = "It is {output} today."
"#;

/// The mid-answer case: a long spoken answer, cut by A's death.
const ANSWER_SCENARIO: &str = r#"
[[turn]]
say = "Let me tell you a long story about the river, the bridges and the old quays of the city, which takes a good while to say out loud, so that there is time to stop in the middle of it."
"#;

/// What B's sessions answer.
const RESUMED_SCENARIO: &str = r#"
[[turn]]
say = "Back: {input}"

[[turn]]
say = "Back again: {input}"

[[turn]]
say = "Still here: {input}"
"#;

// ------------------------------------------------------------------ the app instances

/// An app instance when run by a test below as a child process (does nothing otherwise):
/// serves the browser transport on 127.0.0.1 (the port is printed as `LISTENING <port>`),
/// its agent recording into Redis; with `RESUME_HANG=1` its weather tool never returns.
#[test]
fn app_instance() {
    if std::env::var(APP_VAR).is_err() {
        return;
    }
    let env = |k: &str| std::env::var(k).unwrap();
    let (url, redis_url, hang) = (env("RESUME_URL"), env("RESUME_REDIS"), env("RESUME_HANG"));
    let hang = hang == "1";
    actix_rt::System::new().block_on(async move {
        let store = RedisConversationStore::builder(redis_url).build().unwrap();
        let agent = LiveAgent::builder("assistant")
            .prompt("You are a test agent.")
            .config(
                openai::RealtimeConfig::new("gpt-realtime")
                    .base_url(url)
                    .api_key("local-key"),
            )
            .tool(Tool::new(
                "lookup_weather",
                "The weather in a city.",
                move |a: City| async move {
                    if hang {
                        std::future::pending::<()>().await;
                    }
                    Ok::<_, ToolError>(format!("sunny in {}", a.city))
                },
            ))
            .store(store)
            .build()
            .unwrap();
        let transport = BrowserTransport::new(agent).path("/talk/");
        let (port, _handle) = serve(move |cfg| transport.config(cfg));
        println!("LISTENING {port}");
        std::future::pending::<()>().await;
    });
}

/// A child process, SIGKILLed on drop (even when an assertion fails).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts an app instance; returns it and its port.
fn start_instance(provider_url: &str, redis_url: &str, hang: bool) -> (KillOnDrop, u16) {
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "app_instance", "--nocapture", "--test-threads=1"])
            .env(APP_VAR, "1")
            .env("RESUME_URL", provider_url)
            .env("RESUME_REDIS", redis_url)
            .env("RESUME_HANG", if hang { "1" } else { "0" })
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("app instance starts"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The test harness may print its own text first on the line.
            if let Some((_, p)) = line.split_once("LISTENING ") {
                let _ = tx.send(p.trim().parse::<u16>().unwrap());
            }
        }
    });
    let port = rx.recv_timeout(FAILSAFE).expect("the app instance listens");
    (child, port)
}

// ------------------------------------------------------------------ the load balancer

/// A TCP proxy on 127.0.0.1: each new connection goes to the first upstream that accepts
/// it (a dead instance refuses, so new connections go to the next one). Connections end
/// when either side does.
async fn balancer(upstreams: Vec<u16>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstreams = Arc::new(upstreams);
    actix_rt::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let upstreams = upstreams.clone();
            actix_rt::spawn(async move {
                for up in upstreams.iter() {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", *up)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        return;
                    }
                }
            });
        }
    });
    port
}

// ------------------------------------------------------------------ the browser

fn chromedriver() -> Res<(KillOnDrop, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("chromedriver: {e} (scripts/setup.sh installs chromium-driver)"))?;
    let child = KillOnDrop(child);
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t0.elapsed() > Duration::from_secs(10) {
            return Err("chromedriver did not start".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((child, format!("http://127.0.0.1:{port}")))
}

fn chrome_caps(wav: &Path) -> serde_json::Map<String, Value> {
    let args = vec![
        "--headless".to_owned(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--use-fake-ui-for-media-stream".into(),
        "--use-fake-device-for-media-stream".into(),
        "--autoplay-policy=no-user-gesture-required".into(),
        format!("--use-file-for-fake-audio-capture={}", wav.display()),
    ];
    json!({ "browserName": "chrome", "goog:chromeOptions": { "args": args } })
        .as_object()
        .unwrap()
        .clone()
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap_or(Value::Null)
}

/// Polls `check` every 100 ms until it holds; an error naming `what` (and the page's
/// state) after the failsafe.
async fn until<F, Fut>(c: &Client, what: &str, mut check: F) -> Res<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + FAILSAFE * 2;
    while !check().await {
        if Instant::now() > deadline {
            let voice = js(c, "return window.voice").await;
            return Err(format!("waited too long for {what}; page: {voice}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

// ------------------------------------------------------------------ the provider

fn client_frames(server: &LocalServer, from: usize) -> Vec<Value> {
    server.recording()[from..]
        .iter()
        .filter_map(|l| l.strip_prefix("> "))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The local realtime server on its own thread (its own actix system), so that it keeps
/// serving while the test's thread waits.
fn provider(first: &str) -> LocalServer {
    let first = first.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let mut config = ServerConfig::scripted(Scenario::from_toml(&first).unwrap())
                .with_scenario("resumed", Scenario::from_toml(RESUMED_SCENARIO).unwrap());
            config.pacing = Pacing::RealTime;
            let server = LocalServer::start(config.recording_in_memory())
                .await
                .unwrap();
            tx.send(server).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

/// A summary of the conversation items a session created, in order.
fn items(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f["type"] == "conversation.item.create")
        .map(|f| &f["item"])
        .map(|i| match i["type"].as_str() {
            Some("message") => format!(
                "{}: {}",
                i["role"].as_str().unwrap_or("?"),
                i["content"][0]["text"].as_str().unwrap_or("?")
            ),
            Some("function_call") => format!(
                "call {} {}",
                i["name"].as_str().unwrap_or("?"),
                i["call_id"].as_str().unwrap_or("?")
            ),
            Some("function_call_output") => format!(
                "output {} {}",
                i["call_id"].as_str().unwrap_or("?"),
                i["output"].as_str().unwrap_or("?")
            ),
            other => format!("{other:?}"),
        })
        .collect()
}

// ------------------------------------------------------------------ the cases

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kill {
    MidAnswer,
    MidToolCall,
}

/// What the test saw, gathered before everything is torn down.
struct Seen {
    before: ConversationState,
    after: ConversationState,
    voice: Value,
    transcript: String,
    b_frames: Vec<Value>,
}

/// Kill -9 instance A mid-answer: the page resumes on B, which replays the history; the
/// user goes on talking to B.
#[test]
fn page_resumes_on_another_instance_after_kill_mid_answer() {
    resume_after_kill(Kill::MidAnswer);
}

/// Kill -9 instance A while its tool runs: the page resumes on B, which runs the call once
/// and sends its result exactly once; the user goes on talking to B.
#[test]
fn page_resumes_on_another_instance_after_kill_mid_tool_call() {
    resume_after_kill(Kill::MidToolCall);
}

fn resume_after_kill(kill: Kill) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(redis) = RedisServer::start() else {
        return;
    };
    support::init_tracing();
    let server = provider(match kill {
        Kill::MidAnswer => ANSWER_SCENARIO,
        Kill::MidToolCall => TOOL_SCENARIO,
    });
    let dir = std::env::temp_dir().join(format!(
        "liveagent-browser-resume-{}-{kill:?}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("question.wav");
    let mut pcm = liveagent_testkit::speech_pcm("What is the weather in Paris?", 16_000);
    // Silence long enough for A to answer (or call its tool) before the question loops.
    pcm.extend(std::iter::repeat_n(0i16, 16_000 * 5));
    write_wav(&wav, 16_000, &pcm);

    let (instance_a, port_a) = start_instance(&server.openai_url(), &redis.url(), true);
    let (instance_b, port_b) =
        start_instance(&server.openai_url_for("resumed"), &redis.url(), false);
    let outcome = actix_rt::System::new().block_on(drive(
        kill,
        &server,
        &redis.url(),
        &wav,
        instance_a,
        [port_a, port_b],
    ));
    drop(instance_b);
    std::fs::remove_dir_all(&dir).ok();
    let seen = outcome.unwrap();
    check(kill, &seen);
}

async fn drive(
    kill: Kill,
    server: &LocalServer,
    redis_url: &str,
    wav: &Path,
    mut instance_a: KillOnDrop,
    ports: [u16; 2],
) -> Res<Seen> {
    let store = RedisConversationStore::builder(redis_url).build()?;
    let lb = balancer(ports.to_vec()).await;
    let (_driver, driver_url) = chromedriver()?;
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(chrome_caps(wav))
        .connect(&driver_url)
        .await?;
    let result = async {
        client
            .goto(&format!("http://127.0.0.1:{lb}/talk/?autostart=1"))
            .await?;
        until(&client, "the page running on A", || async {
            js(&client, "return window.voice.status").await == "running"
        })
        .await?;
        let id = js(&client, "return window.voice.conversationId").await;
        let id = ConversationId::parse(id.as_str().ok_or("no conversation id")?)?;

        // Wait until A is where it must die, and its state is in Redis.
        let store_ref = &store;
        let id_ref = &id;
        let stored = || async move {
            store_ref.load(id_ref).await.ok().flatten().filter(|s| {
                let user = s
                    .history
                    .iter()
                    .any(|r| matches!(r, HistoryRecord::User { .. }));
                match kill {
                    Kill::MidToolCall => user && !s.tools_in_flight.is_empty(),
                    Kill::MidAnswer => user,
                }
            })
        };
        until(&client, "A's state in Redis", || async {
            stored().await.is_some()
        })
        .await?;
        if kill == Kill::MidAnswer {
            until(&client, "A's answer playing on the page", || async {
                js(&client, "return window.voice.framesReceived")
                    .await
                    .as_u64()
                    .unwrap_or(0)
                    > 10
            })
            .await?;
        }
        let before = stored().await.ok_or("state vanished")?;

        // kill -9 A: no goodbye, no last write. Whatever the provider receives from now
        // on comes from B (the page reconnects within a few hundred milliseconds).
        instance_a.0.kill()?;
        instance_a.0.wait()?;
        let mark = server.recording().len();

        // The page reconnects through the balancer, lands on B, resumes.
        until(&client, "the page resumed on B", || async {
            let v = js(&client, "return window.voice").await;
            v["resumes"].as_u64().unwrap_or(0) >= 1 && v["status"] == "running"
        })
        .await?;
        // The user goes on talking: B answers (the first answer after the tool result,
        // or after the looping question).
        until(&client, "B answering on the page", || async {
            let t = js(
                &client,
                "return document.getElementById('transcript').innerText",
            )
            .await;
            t.as_str().is_some_and(|t| t.contains("Back"))
        })
        .await?;
        let after = store
            .load(&id)
            .await?
            .ok_or("conversation gone from Redis")?;
        let voice = js(&client, "return window.voice").await;
        let transcript = client
            .find(Locator::Css("#transcript"))
            .await?
            .text()
            .await?;
        let png = support::artifacts_dir().join(format!("browser_resume_{kill:?}.png"));
        std::fs::write(&png, client.screenshot().await?)?;
        Ok::<_, Box<dyn std::error::Error>>(Seen {
            before,
            after,
            voice,
            transcript,
            b_frames: client_frames(server, mark),
        })
    }
    .await;
    client.close().await.ok();
    result
}

fn check(kill: Kill, seen: &Seen) {
    println!("voice = {}", seen.voice);
    println!("transcript = {:?}", seen.transcript);
    let b_items = items(&seen.b_frames);
    println!("B's session items = {b_items:#?}");
    assert_eq!(
        seen.voice["conversationId"],
        seen.before.id.as_str(),
        "the same conversation"
    );
    assert!(seen.voice["resumes"].as_u64().unwrap() >= 1);
    assert!(seen.voice["connections"].as_u64().unwrap() >= 2);
    assert!(seen.voice["resumeFailed"].is_null());
    // B's new provider session got the history A had stored, before anything new: the
    // user's question first.
    let first_user = seen
        .before
        .history
        .iter()
        .find_map(|r| match r {
            HistoryRecord::User { text } => Some(text.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        b_items.first(),
        Some(&format!("user: {first_user}")),
        "B replays the history first: {b_items:#?}"
    );
    let first_response = seen
        .b_frames
        .iter()
        .position(|f| f["type"] == "response.create");
    let first_item = seen
        .b_frames
        .iter()
        .position(|f| f["type"] == "conversation.item.create");
    if let (Some(r), Some(i)) = (first_response, first_item) {
        assert!(i < r, "history replayed before B's first response.create");
    }
    match kill {
        Kill::MidToolCall => {
            let call = seen.before.pending_calls()[0].clone();
            assert_eq!(call.name, "lookup_weather");
            assert_eq!(
                b_items[1],
                format!("call lookup_weather {}", call.call_id),
                "the in-flight call is replayed: {b_items:#?}"
            );
            let outputs: Vec<&String> = b_items
                .iter()
                .filter(|t| t.starts_with(&format!("output {} ", call.call_id)))
                .collect();
            assert_eq!(
                outputs.len(),
                1,
                "exactly one output for the call: {b_items:#?}"
            );
            assert!(outputs[0].contains("sunny in Paris"), "{outputs:?}");
            // The store: answered once, nothing in flight.
            assert!(seen.after.tools_in_flight.is_empty(), "{:?}", seen.after);
            let results = seen
                .after
                .history
                .iter()
                .filter(|r| matches!(r, HistoryRecord::ToolResult { call_id, .. } if *call_id == call.call_id))
                .count();
            assert_eq!(results, 1, "{:?}", seen.after.history);
        }
        Kill::MidAnswer => {
            // No tool in this conversation; the cut answer was never finished, so it is not
            // replayed as something the user heard in full.
            assert!(
                b_items
                    .iter()
                    .all(|t| !t.starts_with("assistant: Let me tell")),
                "{b_items:#?}"
            );
        }
    }
    assert!(seen.transcript.contains("Back"), "{}", seen.transcript);
}
