// Cutting text to a length without splitting a surrogate pair: shared by prompt extraction and the
// embedders' own input limits.
const ELLIPSIS = '\n…\n';

const isHigh = (c: number): boolean => c >= 0xd800 && c <= 0xdbff;
const isLow = (c: number): boolean => c >= 0xdc00 && c <= 0xdfff;

/** `s.slice(start, end)` moved inward so that no surrogate pair is cut in half. */
export function sliceSafe(s: string, start: number, end: number): string {
  let a = Math.max(0, start);
  let b = Math.min(s.length, end);
  if (a > 0 && a < s.length && isLow(s.charCodeAt(a)) && isHigh(s.charCodeAt(a - 1))) a++;
  if (b > 0 && b < s.length && isHigh(s.charCodeAt(b - 1)) && isLow(s.charCodeAt(b))) b--;
  return a >= b ? '' : s.slice(a, b);
}

/** The first `max` code units of `s`, never ending inside a surrogate pair. */
export const truncateHead = (s: string, max: number): string => (s.length <= max ? s : sliceSafe(s, 0, max));

/** The last `max` code units of `s`, never starting inside a surrogate pair. */
export const truncateTail = (s: string, max: number): string => (s.length <= max ? s : sliceSafe(s, s.length - max, s.length));

/**
 * Keeps the head and the tail of a long text: instructions tend to open a prompt and the question
 * to close it ("...what is wrong with the code above?"), so both carry routing signal.
 */
export function truncateMiddle(s: string, max: number): string {
  if (s.length <= max) return s;
  if (max <= ELLIPSIS.length + 2) return truncateHead(s, max);
  const room = max - ELLIPSIS.length;
  const head = Math.ceil((room * 2) / 3);
  return truncateHead(s, head) + ELLIPSIS + truncateTail(s, room - head);
}
