// Which admin wrote each of the admin's messages, so that after a transfer
// Dana's earlier replies still say "Dana" and only Omar's say "Omar".
//
// What the store's API gives: an admin message's `sender_id`; the
// `admin_connected` frame, `admin{id, name}` (on a claim and on a transfer);
// and, in the history, `system` messages naming admins only in words ("Dana
// joined the chat", "Dana transferred the chat to Omar", sender_id null).
// Only the admin holding a session may write in it, and the history is in
// commit order, so an admin message was written by the holder that the latest
// of those system messages before it names. Names learned from the frames by
// id come first; the history's word decides where no frame was seen (a reload).

const HOLDER_FROM = {
  admin_connected: / joined the chat$/, session_transferred: /^.* transferred the chat to /,
};

// The admin a system message says holds the chat from now on, or null.
export function holderNamedBy(message) {
  const pattern = HOLDER_FROM[message.event];
  return pattern ? message.body.replace(pattern, "") : null;
}

// seq -> the name of the admin who wrote it, for every admin message held.
// `known`: admin id -> name, from `admin_connected` frames.
export function authorsOf(conversation, known) {
  const authors = new Map();
  let holder = null;
  for (const message of conversation.ordered()) {
    if (message.sender === "system") {
      holder = holderNamedBy(message) || holder;
    } else if (message.sender === "admin") {
      const name = known.get(message.sender_id) || holder;
      if (name) authors.set(message.seq, name);
    }
  }
  return authors;
}
