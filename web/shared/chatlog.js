// Draws a Conversation into a list: stored messages in seq order, then ours
// still waiting for their ack ("sending…"). System messages (joined, released,
// closed) are drawn as notices, not as someone's words. Bodies are text nodes.

import { el, formatTime, syncList } from "./dom.js";

// `me`: "admin" or "store", whose messages sit on the right.
// `names(message)`: the label for a message's sender, asked again on every
// render (a name learned later, e.g. once the admins are loaded, replaces it).
export function renderLog(list, conversation, me, names) {
  const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const items = [
    ...conversation.ordered().map((message) => ({ key: `s${message.seq}`, message })),
    ...[...conversation.pending.values()].map((entry) => ({ key: `p${entry.client_id}`, entry })),
  ];
  syncList(list, items, (item) => item.key, (item) => buildItem(item, me, names),
    (node, item) => updateItem(node, item, names));
  if (stick) list.scrollTop = list.scrollHeight;
}

function buildItem(item, me, names) {
  if (item.message && item.message.sender === "system") {
    return el("li", { className: `msg system event-${item.message.event || "note"}` },
      el("span", { className: "body", text: item.message.body }),
      el("time", { className: "when", datetime: item.message.created,
        text: formatTime(item.message.created) }));
  }
  const sender = item.message ? item.message.sender : me;
  const who = item.message ? names(item.message) : "You";
  const body = item.message ? item.message.body : item.entry.body;
  return el("li", { className: `msg ${sender}${sender === me ? " mine" : ""}` },
    el("div", { className: "meta" },
      el("span", { className: "who", text: who }),
      el("time", { className: "when" }),
      el("span", { className: "state", role: "status" })),
    el("div", { className: "body", text: body }));
}

function updateItem(node, item, names) {
  if (item.message && item.message.sender !== "system") {
    const who = node.querySelector(".who");
    const name = names(item.message);
    if (who.textContent !== name) who.textContent = name;
    const when = node.querySelector(".when");
    when.setAttribute("datetime", item.message.created);
    when.textContent = formatTime(item.message.created);
  }
  if (item.entry) {
    node.classList.add("pending");
    node.querySelector(".state").textContent = item.entry.failed
      ? `not sent: ${item.entry.failed}` : "sending…";
    node.classList.toggle("failed", Boolean(item.entry.failed));
  }
}
