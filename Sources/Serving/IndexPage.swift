/// `GET /`: choose or drop an image and see the top-5 classes with their probabilities. Inline HTML,
/// CSS and JavaScript only (no external scripts or fonts). With `#auto=URL` (and `&name=NAME`) in the address it posts the
/// image at URL by itself (what `bench/serve_page_screenshot` uses).
enum IndexPage {
    static let html = #"""
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>finetune serve</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 15px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 44em; color: #222; }
#drop { border: 2px dashed #888; border-radius: 8px; padding: 2em; text-align: center; }
#drop.over { background: #eef; }
img { max-width: 14em; max-height: 14em; margin: 1em 0; }
table { border-collapse: collapse; } td { padding: .2em .8em; }
.bar { background: #4a7; height: .8em; } .err { color: #b00; }
</style></head><body>
<h1>finetune serve</h1>
<p>Model <select id="model"></select> <label>API key <input id="key" type="password" size="12"></label></p>
<div id="drop">Drop an image here, or <input id="file" type="file" accept="image/jpeg,image/png"></div>
<div id="out"></div>
<script>
const $ = id => document.getElementById(id);
function headers(extra) {
  const h = Object.assign({}, extra || {});
  if ($("key").value) h["Authorization"] = "Bearer " + $("key").value;
  return h;
}
async function loadModels() {
  const r = await fetch("/v1/models", {headers: headers()});
  const j = await r.json();
  if (!r.ok) { $("out").innerHTML = '<p class="err">' + esc(j.error) + '</p>'; return; }
  $("model").innerHTML = j.models.map(m => '<option>' + esc(m.name) + '</option>').join("");
}
function esc(s) { return String(s).replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c])); }
async function classify(blob, name) {
  if (!$("model").value) await loadModels();
  const url = URL.createObjectURL(blob);
  $("out").innerHTML = '<p>' + esc(name) + '</p><img src="' + url + '"><p>classifying…</p>';
  const r = await fetch("/v1/models/" + encodeURIComponent($("model").value) + ":predict?top_k=5",
                        {method: "POST", body: blob, headers: headers({"Content-Type": blob.type || "application/octet-stream"})});
  const j = await r.json();
  if (!r.ok) { $("out").innerHTML += '<p class="err">' + esc(j.error) + '</p>'; return; }
  const rows = j.predictions[0].top_k.map(p =>
    '<tr><td>' + esc(p["class"]) + '</td><td>' + (100 * p.probability).toFixed(2) + '%</td>' +
    '<td><div class="bar" style="width:' + (200 * p.probability).toFixed(0) + 'px"></div></td></tr>').join("");
  $("out").innerHTML = '<p>' + esc(name) + '</p><img src="' + url + '"><table id="top">' + rows + '</table>';
  document.title = "top-1: " + j.predictions[0].top_k[0]["class"];
}
$("file").onchange = e => { const f = e.target.files[0]; if (f) classify(f, f.name); };
const drop = $("drop");
drop.ondragover = e => { e.preventDefault(); drop.classList.add("over"); };
drop.ondragleave = () => drop.classList.remove("over");
drop.ondrop = e => { e.preventDefault(); drop.classList.remove("over"); const f = e.dataTransfer.files[0]; if (f) classify(f, f.name); };
loadModels().then(async () => {
  const m = location.hash.match(/auto=([^&]+)/);
  const n = location.hash.match(/name=([^&]+)/);
  if (m) { const u = decodeURIComponent(m[1]); const r = await fetch(u); classify(await r.blob(), n ? decodeURIComponent(n[1]) : u); }
});
</script></body></html>
"""#
}
