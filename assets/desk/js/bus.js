// A tiny publish/subscribe bus shared by every desk module.
// Events: `ws:<type>` for each server WebSocket frame (payload: the frame),
// `open-interaction` (id), `interaction-changed` (interaction view),
// `logged-in` (me), `logged-out`, `ws-state` ('connecting' | 'open' | 'closed').

const handlers = new Map();

export const bus = {
  /** Subscribe; returns a function that unsubscribes. */
  on(event, fn) {
    let set = handlers.get(event);
    if (!set) {
      set = new Set();
      handlers.set(event, set);
    }
    set.add(fn);
    return () => set.delete(fn);
  },
  /** Call every handler of `event`; a throwing handler does not stop the others. */
  emit(event, payload) {
    const set = handlers.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(payload);
      } catch (e) {
        console.error(`bus handler for ${event} failed`, e);
      }
    }
  },
};
