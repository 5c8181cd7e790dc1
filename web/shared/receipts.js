// Read receipts, for both pages: when to tell the server what this side has
// read, and where to show "Seen" for what the other side has read.
//
// Only what is actually in front of someone counts as read: the chat must be
// the one shown, in a visible tab that has the focus. A tab in the background,
// or a second monitor's window nobody looks at, reads nothing.

export function pageIsSeen() {
  return document.visibilityState === "visible" && document.hasFocus();
}

// The seq to mark read now, or 0 when there is nothing new from `other` past
// what this side has already marked (`markedSeq`).
export function seqToMark(conversation, other, markedSeq) {
  let newest = 0;
  for (const message of conversation.messages.values()) {
    if (message.sender === other && message.seq > markedSeq && message.seq > newest) {
      newest = message.seq;
    }
  }
  return newest ? Math.max(newest, conversation.lastSeq) : 0;
}

// Put "Seen" under the last of `mine`'s messages with seq <= `readSeq` (the
// other side's position), and nowhere else. Rows are keyed `s<seq>` (chatlog.js).
export function showSeen(list, conversation, mine, readSeq) {
  let target = null;
  for (const message of conversation.messages.values()) {
    if (message.sender === mine && message.seq <= readSeq && (!target || message.seq > target.seq)) {
      target = message;
    }
  }
  const key = target ? `s${target.seq}` : null;
  for (const mark of [...list.querySelectorAll(".seen")]) {
    if (mark.parentElement.dataset.key !== key) mark.remove();
  }
  const row = key ? list.querySelector(`[data-key="${key}"]`) : null;
  if (row && !row.querySelector(".seen")) {
    const mark = document.createElement("span");
    mark.className = "seen";
    mark.textContent = "Seen";
    row.append(mark);
  }
}

// Call `onChange` whenever the page gains or loses the reader's eyes.
export function onAttentionChange(onChange) {
  window.addEventListener("focus", onChange);
  window.addEventListener("blur", onChange);
  document.addEventListener("visibilitychange", onChange);
}
