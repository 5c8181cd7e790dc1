// The other admins as the console knows them: name, presence and how many
// sessions each holds. Loaded from GET admin/admins/ and kept live by
// `presence` frames; the load counts are fetched again when they may have
// moved (a claim, transfer, release or close anywhere), a little later, once.

const RELOAD_AFTER_MS = 300; // several session frames in a row cost one request

export class Team {
  constructor(api, onChange) {
    this.api = api;
    this.onChange = onChange;
    this.admins = new Map(); // id -> {id, name, email, presence, active_sessions}
    this.timer = null;
    this.shown = null; // () -> bool, set by the console
  }

  async load() {
    const admins = await this.api.listAll("/admin/admins/?limit=200");
    this.admins = new Map(admins.map((admin) => [admin.id, admin]));
    this.onChange();
  }

  // Load again soon, while the counts are on screen (`shown()`: the picker is
  // open; it loads afresh when opened); failures leave the last counts shown.
  reloadSoon() {
    if (this.shown && !this.shown()) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.load().catch(() => {}), RELOAD_AFTER_MS);
  }

  applyPresence(frame) {
    const admin = this.admins.get(frame.admin_id);
    if (admin) admin.presence = frame.status;
    else this.load().catch(() => {}); // an admin created since the list was loaded
    this.onChange();
  }

  nameOf(id) {
    const admin = this.admins.get(id);
    return admin ? admin.name : `admin #${id}`;
  }

  // Everyone but `meId`: online first, then away, then offline; by name within.
  others(meId) {
    const rank = { online: 0, away: 1, offline: 2 };
    return [...this.admins.values()]
      .filter((admin) => admin.id !== meId)
      .sort((a, b) => (rank[a.presence] ?? 3) - (rank[b.presence] ?? 3)
        || a.name.localeCompare(b.name));
  }
}
