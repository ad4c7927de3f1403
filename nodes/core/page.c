/* page.c — GET /: the fleet page. One self-contained HTML document (no
 * external resources): devices with last seen and sync figures, drift
 * events awaiting validation with their image and sample thumbnails, a
 * label field and Validate / Reject buttons. It talks to the same JSON
 * API with the admin token, which the operator types in (kept in the
 * tab's sessionStorage) or passes as #token=… in the address.
 */
#include <string.h>

#include "nodes/core/core.h"

static const char PAGE[] =
"<!doctype html><html lang=en><head><meta charset=utf-8>"
"<meta name=viewport content='width=device-width,initial-scale=1'>"
"<title>TinyLCM fleet</title><style>"
"body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}"
"h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}"
"table{border-collapse:collapse}td,th{padding:.25em .6em;border-bottom:1px solid #ddd;text-align:left}"
".ev{border:1px solid #ccc;border-radius:6px;padding:.6em;margin:.6em 0}"
".ev img{image-rendering:pixelated;width:56px;height:56px;margin:2px;border:1px solid #eee}"
".ev img.big{width:112px;height:112px}#err{color:#b00}"
"</style></head><body><h1>TinyLCM fleet</h1>"
"<p id=auth><label>Admin token <input id=tok type=password size=40></label>"
" <button id=save>Use</button></p><p id=err></p>"
"<h2>Devices</h2><table id=devices><thead><tr><th>device</th><th>platform</th>"
"<th>last seen</th><th>packages</th><th>duplicates</th><th>drift events</th>"
"<th>labels waiting</th></tr></thead><tbody></tbody></table>"
"<h2>Drift events awaiting validation</h2><div id=events></div>"
"<script>\n"
"'use strict';\n"
"const api='/api/v1';\n"
"let token=sessionStorage.getItem('tlcm-admin')||'';\n"
"const m=location.hash.match(/token=([^&]+)/);\n"
"if(m){token=decodeURIComponent(m[1]);sessionStorage.setItem('tlcm-admin',token);"
"history.replaceState(null,'',location.pathname);}\n"
"document.getElementById('save').onclick=()=>{token=document.getElementById('tok').value;"
"sessionStorage.setItem('tlcm-admin',token);refresh();};\n"
"const err=t=>{document.getElementById('err').textContent=t||'';};\n"
"async function call(path,opt){opt=opt||{};opt.headers=Object.assign({Authorization:'Bearer '+token},opt.headers||{});"
"const r=await fetch(api+path,opt);if(!r.ok){let d='';try{d=(await r.json()).detail}catch(e){}"
"throw new Error(r.status+' '+d);}return r;}\n"
"// ids (frame ids) above 2^53 lose digits as JS numbers: integers of 16\n"
"// or more digits outside strings are read as strings\n"
"async function json(r){const t=await r.text();return JSON.parse(t.replace("
"/\"(?:[^\"\\\\]|\\\\.)*\"|(?<![\\d.eE+-])(\\d{16,})(?![\\d.eE])/g,"
"(m,d)=>d?'\"'+d+'\"':m));}\n"
"function el(tag,attrs,text){const e=document.createElement(tag);"
"for(const k in attrs||{})e.setAttribute(k,attrs[k]);if(text!==undefined)e.textContent=text;return e;}\n"
"async function img(path,cls){const e=el('img',{alt:path,class:cls||''});"
"try{const b=await (await call(path)).blob();e.src=URL.createObjectURL(b);}catch(x){e.alt='(no image)';}return e;}\n"
"const ago=ns=>{if(!ns)return 'never';const s=Math.round(Date.now()/1000-ns/1e9);"
"return s<120?s+' s ago':s<7200?Math.round(s/60)+' min ago':Math.round(s/3600)+' h ago';};\n"
"async function devices(){const j=await json(await call('/devices'));"
"const tb=document.querySelector('#devices tbody');tb.textContent='';"
"for(const d of j.devices){const tr=el('tr',{'data-device':d.device_id});"
"for(const v of [d.device_id,d.platform||'',ago(d.last_seen_ns),d.packages,d.duplicates,"
"d.drift_events,d.feedback_pending])tr.appendChild(el('td',{},String(v)));tb.appendChild(tr);}}\n"
"async function events(){const j=await json(await call('/drift/events?status=pending&limit=50'));"
"const box=document.getElementById('events');box.textContent='';"
"if(!j.events.length)box.appendChild(el('p',{id:'none'},'Nothing to validate.'));"
"for(const e of j.events){const d=el('div',{class:'ev','data-event':e.id});"
"d.appendChild(el('div',{},e.device_id+': '+e.detector+' on '+e.metric+' = '+"
"Number(e.value).toFixed(2)+' (threshold '+Number(e.threshold).toFixed(2)+'), frame '+e.frame_id+', '+ago(e.received_ns)));"
"if(e.image)d.appendChild(await img('/drift/events/'+encodeURIComponent(e.id)+'/image','big'));"
"const s=el('div');for(const f of (e.samples||[]).slice(0,40))"
"s.appendChild(await img('/samples/'+f+'/thumbnail?device='+encodeURIComponent(e.device_id)));"
"d.appendChild(s);d.appendChild(el('span',{},(e.samples||[]).length+' samples '));"
"const inp=el('input',{placeholder:'label, e.g. Bag',class:'label'});d.appendChild(inp);"
"const ok=el('button',{class:'validate'},'Validate');const no=el('button',{class:'reject'},'Reject');"
"ok.onclick=()=>verdict(e.id,{label:inp.value});no.onclick=()=>verdict(e.id,{reject:true});"
"d.appendChild(ok);d.appendChild(no);box.appendChild(d);}}\n"
"async function verdict(id,body){try{await call('/drift/events/'+encodeURIComponent(id)+'/validate',"
"{method:'POST',headers:{'Content-Type':'application/json'},body:JSON.stringify(body)});"
"err('');await refresh();}catch(x){err('validate: '+x.message);}}\n"
"async function refresh(){if(!token){err('Enter the admin token.');return;}"
"try{await devices();await events();err('');document.body.dataset.loaded='1';}"
"catch(x){err(x.message);}}\n"
"refresh();setInterval(()=>{if(!document.getElementById('events').contains(document.activeElement))refresh();},10000);\n"
"</script></body></html>\n";

void core_page(core_req_t *r)
{
	core_add_header(r, "Content-Security-Policy",
			"default-src 'self'; img-src 'self' blob:; "
			"script-src 'unsafe-inline'; style-src "
			"'unsafe-inline'");
	core_reply(r, 200, "text/html; charset=utf-8", PAGE, sizeof PAGE - 1);
}
