// DOM helpers shared by the dashboard's views.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export const metric = (key, value, text) => h("span", {"data-metric": key, "data-value": value}, text);
export const table = (head, rows) => h("table", {}, h("thead", {}, h("tr", {}, head.map(([label, cls]) => h("th", {class: cls}, label)))),
                                       h("tbody", {}, rows));

// Save text as a file the browser downloads (the CSV exports).
export function download(filename, text, type) {
  const url = URL.createObjectURL(new Blob([text], {type}));
  const a = h("a", {href: url, download: filename, hidden: true});
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
