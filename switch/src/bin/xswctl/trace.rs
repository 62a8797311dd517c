//! `xswctl trace` as text: one line per stage, in the pipeline's order,
//! then each egress port and the fast path's answer.

use serde_json::Value;

/// The reply of a `trace` request as an operator reads it.
pub fn render(data: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let mut out = format!(
        "trace of a {}-byte frame entering {} (worker {})\n",
        data["frame_bytes"],
        text(&data["port"]),
        data["worker"]
    );
    for stage in data["stages"].as_array().into_iter().flatten() {
        let result = text(&stage["result"]);
        let mut line = format!("  {:<14} {:<12}", text(&stage["stage"]), result);
        if let Some(reason) = stage["reason"].as_str() {
            line.push_str(&format!("[{reason}] "));
        }
        line.push_str(&text(&stage["detail"]));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    for egress in data["egress"].as_array().into_iter().flatten() {
        let detail = match egress["reason"].as_str() {
            Some(reason) => format!("refuse [{reason}]"),
            None => format!("deliver, tag {}", text(&egress["tag"])),
        };
        out.push_str(&format!("  egress {:<7} {detail}\n", text(&egress["port"])));
    }
    let fast = &data["fast_path"];
    let fast_line = if fast["taken"].as_bool() == Some(true) {
        format!(
            "flow entry ({} key, {})",
            text(&fast["key_width"]),
            text(&fast["action"])
        )
    } else {
        format!("no: {}", text(&fast["detail"]))
    };
    out.push_str(&format!("  {:<14} {fast_line}\n", "fast_path"));
    let result = text(&data["result"]);
    let verdict = match data["reason"].as_str() {
        Some(reason) => format!("{result} [{reason}]"),
        None => {
            let to: Vec<String> = data["delivered_to"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            format!("{result} to {}", to.join(", "))
        }
    };
    out.push_str(&format!("result: {verdict} (nothing was sent or changed)"));
    out
}
