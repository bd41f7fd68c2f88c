"""The page's inline style sheet (Okabe-Ito derived colours; borders differ in style too)."""

CSS = """
:root{--ok:#00694d;--ok-bg:#e3f4ee;--bad:#a13f00;--bad-bg:#fde9dc;--unk:#7a5200;
--unk-bg:#fdf3d7;--none:#57606a;--none-bg:#eaeef2;--line:#d0d7de;--ink:#1f2328;
--muted:#59636e;--link:#0b5cad}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:var(--ink);margin:0;background:#f6f8fa;overflow-wrap:anywhere}
main{max-width:1280px;margin:0 auto;padding:20px 24px 60px;background:#fff;min-height:100vh}
h1{font-size:24px;margin:0 0 4px}h2{font-size:20px;margin:34px 0 10px;padding-bottom:6px;
border-bottom:1px solid var(--line)}h3{font-size:17px;margin:10px 0 8px}
h4{font-size:15px;margin:18px 0 6px}
.sub{color:var(--muted);margin:0 0 12px}
.banner{border-radius:10px;padding:14px 18px;margin:12px 0 14px;border:3px solid}
.banner .word{font-size:30px;font-weight:800;letter-spacing:.03em;display:block}
.banner.pass{background:var(--ok-bg);border-color:var(--ok)}
.banner.fail{background:var(--bad-bg);border-color:var(--bad);border-style:double;
border-width:6px}
.banner.unknown{background:var(--unk-bg);border-color:var(--unk);border-style:dashed}
.banner.pass .word{color:var(--ok)}.banner.fail .word{color:var(--bad)}
.banner.unknown .word{color:var(--unk)}
.banner ul{margin:6px 0 0;padding-left:20px}.banner li{margin:3px 0}
.stats{display:flex;flex-wrap:wrap;gap:8px;margin:10px 0 4px}
.stat{border:1px solid var(--line);border-radius:8px;padding:6px 12px;background:#fff;
min-width:0;flex:1 1 150px}
.stat b{display:block;font-size:20px}.stat.bad{border:2px solid var(--bad)}
nav{font-size:14px;margin:10px 0;display:flex;flex-wrap:wrap;gap:4px 14px}
.wrap{max-width:100%;overflow-x:auto;margin:6px 0 12px}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;border-radius:999px;padding:0 9px;font-weight:700;font-size:12px;
white-space:nowrap;border:1px solid}
.badge.pass,.badge.caught,td.pass{color:var(--ok);background:var(--ok-bg);border-color:var(--ok)}
.badge.fail,.badge.missed,td.fail{color:var(--bad);background:var(--bad-bg);
border-color:var(--bad);border-width:2px}
.badge.unknown,td.unknown{color:var(--unk);background:var(--unk-bg);border-color:var(--unk);
border-style:dashed}
.badge.untested,.badge.none,td.none{color:var(--none);background:var(--none-bg);
border-color:var(--none);border-style:dotted}
td.cell{text-align:center;white-space:nowrap}
.bad{color:var(--bad);font-weight:700}
.error{background:var(--bad-bg);border-left:5px solid var(--bad);padding:8px 12px;
white-space:pre-wrap;font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
.note{color:var(--muted);font-size:13px}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
pre{background:#f6f8fa;border:1px solid var(--line);border-radius:6px;padding:8px 10px;
max-height:360px;overflow-y:auto;white-space:pre-wrap;overflow-wrap:anywhere}
code.cmd{background:#f6f8fa;border:1px solid var(--line);border-radius:4px;padding:1px 5px;
user-select:all}
section.scenario{border-top:4px solid var(--line);margin-top:30px;padding-top:6px}
section.sc-fail,section.sc-missed{border-top:6px double var(--bad)}
section.sc-unknown{border-top:4px dashed var(--unk)}section.sc-pass{border-top-color:var(--ok)}
svg.chart{width:100%;height:auto;max-width:1150px;min-width:640px;display:block;
margin:6px 0 14px}
svg.chart.narrow{max-width:720px;min-width:420px}
.pair{display:flex;flex-wrap:wrap;gap:12px 28px;align-items:flex-start}
.pair>*{min-width:0;flex:1 1 320px}
dl.glossary{margin:6px 0;font-size:13px}dl.glossary dt{font-weight:700}
dl.glossary dd{margin:0 0 6px 0;color:var(--muted)}
details{margin:6px 0}details>summary{cursor:pointer;color:var(--link)}
details.story{border:1px solid var(--line);border-radius:8px;padding:6px 10px;margin:8px 0}
details.story.lost,details.story.unexpected{border:2px solid var(--bad)}
details.story.duplicated{border:2px dashed var(--unk)}
details.story:target{outline:3px solid var(--link);outline-offset:3px}
ol.story{list-style:none;padding:0;margin:6px 0;font-size:13px}
ol.story li{display:grid;grid-template-columns:7em 8em minmax(0,1fr);gap:2px 8px;
padding:2px 0;border-bottom:1px solid #eef1f4}
ol.story li.bad{background:var(--bad-bg)}
ol.story .t{font-variant-numeric:tabular-nums;white-space:nowrap;color:var(--muted)}
ol.story .k{font-weight:700;font-size:11px;text-transform:uppercase;letter-spacing:.03em}
ol.story li.log .x{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
a{color:var(--link)}
@media (max-width:600px){
main{padding:12px 10px 40px}.banner .word{font-size:24px}
ol.story li{grid-template-columns:6.5em minmax(0,1fr)}ol.story .k{grid-column:2}
ol.story .x{grid-column:1/-1}
.wrap>table:has(thead),.wrap>table:has(thead) tbody,.wrap>table:has(thead) tr{display:block}
.wrap>table:has(thead) thead{display:none}
.wrap>table:has(thead) td{display:block;border:none;padding:2px 0}
.wrap>table:has(thead) tr{border-bottom:1px solid #bbb;padding:6px 0}
}
"""
