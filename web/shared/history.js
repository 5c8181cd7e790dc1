// Paging a session's history, which the API serves upwards from `after_seq`.
// To show the newest page first we need the last seq, which the session object
// does not carry: find it with a few one-message probes (about 2·log2(n)
// requests) instead of downloading the whole history.

// fetchPage(afterSeq, limit) -> {messages, has_more}
export async function findLastSeq(fetchPage) {
  const exists = async (afterSeq) => (await fetchPage(afterSeq, 1)).messages.length > 0;
  if (!(await exists(0))) return 0;
  let low = 0; // a message above `low` exists
  let high = 1;
  while (await exists(high)) {
    low = high;
    high *= 2;
  }
  // a message above `low` exists, none above `high`: the last seq is in (low, high]
  while (high - low > 1) {
    const middle = Math.floor((low + high) / 2);
    if (await exists(middle)) low = middle;
    else high = middle;
  }
  return high;
}

// The page just below `floor`: messages newFloor+1 .. floor.
export async function fetchOlder(fetchPage, floor, pageSize) {
  const newFloor = Math.max(0, floor - pageSize);
  const page = await fetchPage(newFloor, floor - newFloor);
  return { messages: page.messages, floor: newFloor };
}
