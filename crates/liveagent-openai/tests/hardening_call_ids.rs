//! Call ids a provider can grow without limit (issue 13, item 4's class): a conversation that
//! goes through many tool calls keeps only the calls in flight plus a bounded window of answered
//! ones, through the protocol's public sans-IO API. Duplicates are still never sent twice.

mod common;

use common::{feed, ready};
use liveagent_core::limits::DEFAULT_MAX_REMEMBERED_IDS;
use liveagent_core::{Outbox, RealtimeProtocol, SessionCommand, ToolResult};
use liveagent_openai::OpenAiProtocol;
use serde_json::json;

fn result(p: &mut OpenAiProtocol, call: &str) -> Outbox {
    let mut out = Outbox::new();
    p.on_command(
        SessionCommand::ToolResult(ToolResult {
            call_id: call.into(),
            name: "get_weather".into(),
            output: Ok(json!("sunny")),
            request_response: false,
        }),
        &mut out,
    );
    out
}

/// One response with `n` complete function calls named `call_<r>_<i>`.
fn response_with_calls(p: &mut OpenAiProtocol, r: usize, n: usize, status: &str) {
    let id = format!("resp_{r}");
    feed(
        p,
        json!({"type":"response.created","event_id":"e","response":{"object":"realtime.response","id":id,"status":"in_progress","output":[]}}),
    );
    for i in 0..n {
        feed(
            p,
            json!({"type":"response.function_call_arguments.done","event_id":"e","response_id":id,
                   "item_id":format!("item_{r}_{i}"),"output_index":i,"call_id":format!("call_{r}_{i}"),
                   "name":"get_weather","arguments":"{}"}),
        );
    }
    feed(
        p,
        json!({"type":"response.done","event_id":"e","response":{"object":"realtime.response","id":id,"status":status,"output":[]}}),
    );
}

#[test]
fn answered_and_cancelled_calls_are_not_remembered_without_limit() {
    let mut p = ready();
    let (responses, per) = (6, 2_000);
    for r in 0..responses {
        response_with_calls(&mut p, r, per, "completed");
        for i in 0..per {
            let out = result(&mut p, &format!("call_{r}_{i}"));
            assert_eq!(out.frames.len(), 1, "the output of call_{r}_{i} is sent");
        }
        // a cancelled response's calls never run and are not kept either
        response_with_calls(&mut p, 100 + r, per, "cancelled");
    }
    assert!(
        p.tracked_call_ids() <= DEFAULT_MAX_REMEMBERED_IDS,
        "{} call ids tracked after {} calls",
        p.tracked_call_ids(),
        2 * responses * per
    );

    // a recent duplicate is recognised and dropped; an old one is refused as unknown: neither
    // reaches the provider a second time
    let last = format!("call_{}_{}", responses - 1, per - 1);
    assert!(result(&mut p, &last).frames.is_empty());
    let old = result(&mut p, "call_0_0");
    assert!(
        old.frames.is_empty(),
        "an evicted call's duplicate is not sent"
    );
    assert!(
        !old.events.is_empty(),
        "the refused duplicate is reported on the event stream"
    );

    // a call of a cancelled response has no output to send
    assert!(result(&mut p, "call_100_0").frames.is_empty());
}

#[test]
fn calls_in_flight_stay_known_until_answered() {
    let mut p = ready();
    response_with_calls(&mut p, 0, 10, "completed");
    assert_eq!(
        p.tracked_call_ids(),
        20,
        "10 known + 10 awaiting their output"
    );
    for i in 0..10 {
        assert_eq!(result(&mut p, &format!("call_0_{i}")).frames.len(), 1);
    }
    assert_eq!(p.tracked_call_ids(), 10, "only the answered window is left");
}
