#!/usr/bin/env python3
"""Writes deploy/grafana/tern-dashboard.json (run from the repository root): the panels are kept
here as code so that a row or a query changes in one place. test/e2e/metrics.test.ts checks that
every query parses (promtool) and names metrics a live scrape declares."""
import json
import os
panels=[]
state={"y":0,"pid":1}
DS={"type":"prometheus","uid":"${DS_PROMETHEUS}"}
def row(title):
    panels.append({"type":"row","title":title,"id":state["pid"],"collapsed":False,"gridPos":{"h":1,"w":24,"x":0,"y":state["y"]},"panels":[]})
    state["pid"]+=1; state["y"]+=1
def line(items):
    w=24//len(items)
    for i,it in enumerate(items):
        title,targets,unit=it[0],it[1],it[2]
        p={"type":"timeseries","title":title,"id":state["pid"],"datasource":DS,
           "gridPos":{"h":8,"w":w,"x":i*w,"y":state["y"]},
           "fieldConfig":{"defaults":{"unit":unit},"overrides":[]},
           "options":{"legend":{"displayMode":"list","placement":"bottom","showLegend":True},"tooltip":{"mode":"multi","sort":"desc"}},
           "targets":[{"refId":chr(65+k),"expr":e,"legendFormat":l,"datasource":DS} for k,(e,l) in enumerate(targets)]}
        if len(it)>3: p["description"]=it[3]
        panels.append(p); state["pid"]+=1
    state["y"]+=8
def m(metric, extra=""):
    return metric+'{instance=~"$instance"'+extra+'}'
def rate(metric, extra=""):
    return "rate("+m(metric,extra)+"[$__rate_interval])"
P99=',stat="p99"'
row("Intake")
line([
 ("Accepted per second",[("sum("+rate('tern_messages_accepted_total')+")","messages"),("sum("+rate('tern_recipients_accepted_total')+")","recipients")],"reqps"),
 ("Refused per second, by reply",[("sum by (code, enhanced) ("+rate('tern_ingress_refusals_total')+")","{{code}} {{enhanced}}")],"reqps","452 4.3.1: the spool; 530 5.7.0: relay access; 421 4.7.0: per-client limits (docs/replies.md)"),
])
row("Outcomes")
line([
 ("Attempts per second, by verdict",[("sum by (verdict) ("+rate('tern_delivery_attempts_total')+")","{{verdict}}")],"reqps"),
 ("Deferrals per second, by reason",[("topk(10, sum by (reason) ("+rate('tern_deferrals_total')+"))","{{reason}}")],"reqps"),
 ("Failures per second, by cause and reason",[("topk(10, sum by (cause, reason) ("+rate('tern_failures_total')+"))","{{cause}} {{reason}}")],"reqps"),
])
row("Queue")
line([
 ("Waiting",[("sum("+m('tern_queue_recipients')+")","recipients"),("sum by (state) ("+m('tern_queue_messages')+")","messages {{state}}")],"short"),
 ("Oldest queued message",[("max("+m('tern_queue_oldest_message_age_seconds')+")","age")],"s"),
 ("Recipients waiting, by provider",[("sum by (provider) ("+m('tern_provider_queue_recipients')+")","{{provider}}")],"short"),
])
row("Delivery")
line([
 ("Attempt duration, by provider",[("histogram_quantile(0.5, sum by (le, provider) ("+rate('tern_delivery_attempt_duration_seconds_bucket')+"))","p50 {{provider}}"),("histogram_quantile(0.99, sum by (le, provider) ("+rate('tern_delivery_attempt_duration_seconds_bucket')+"))","p99 {{provider}}")],"s"),
 ("Connections, by provider",[("sum by (provider) ("+m('tern_provider_connections')+")","{{provider}}"),("sum by (provider) ("+m('tern_shaping_paused_paths')+")","paused paths {{provider}}")],"short"),
 ("DNS queries per second, by result",[("sum by (result) ("+rate('tern_dns_lookups_total')+")","{{result}}")],"reqps"),
 ("DKIM signing p99",[("histogram_quantile(0.99, sum by (le, algorithm) ("+rate('tern_dkim_sign_duration_seconds_bucket')+"))","{{algorithm}}")],"s"),
])
row("Events")
line([
 ("Webhook backlog",[("sum("+m('tern_feedback_pending_events')+")","events waiting")],"short"),
 ("Oldest unacknowledged event",[("max("+m('tern_feedback_oldest_pending_age_seconds')+")","age")],"s"),
 ("Webhook POSTs per second, by result",[("sum by (result) ("+rate('tern_webhook_requests_total')+")","{{result}}"),("sum("+rate('tern_feedback_dropped_total')+")","dropped events")],"reqps"),
])
row("Disk and process")
line([
 ("Spool",[("sum("+m('tern_spool_bytes')+")","used"),("min("+m('tern_spool_free_bytes')+")","free"),("sum("+m('tern_feedback_outbox_bytes')+")","outbox")],"bytes"),
 ("Event-loop delay p99, by thread",[("max by (thread) ("+m('tern_event_loop_delay_seconds',P99)+")","{{thread}}")],"s"),
 ("CPU and memory",[(rate('tern_process_process_cpu_seconds_total'),"CPU (cores)"),(m('tern_process_process_resident_memory_bytes')+" / 2^30","RSS (GiB)")],"short"),
 ("Operator",[("sum by (target) ("+m('tern_admin_suspensions')+")","suspended {{target}}"),("sum by (action) (increase("+m('tern_admin_actions_total')+"[$__range]))","{{action}} calls in range")],"short"),
])
dash={
 "__inputs":[{"name":"DS_PROMETHEUS","label":"Prometheus","type":"datasource","pluginId":"prometheus","pluginName":"Prometheus"}],
 "title":"Tern","uid":"tern-overview","tags":["tern","mta"],"timezone":"browser","schemaVersion":39,"version":1,"editable":True,
 "time":{"from":"now-6h","to":"now"},"refresh":"30s",
 "templating":{"list":[{"name":"instance","type":"query","label":"instance","datasource":DS,
   "query":{"query":"label_values(tern_messages_accepted_total, instance)","refId":"instance"},"definition":"label_values(tern_messages_accepted_total, instance)",
   "includeAll":True,"multi":True,"current":{"text":"All","value":"$__all"},"refresh":2}]},
 "annotations":{"list":[]},
 "panels":panels,
}
open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'tern-dashboard.json'),'w').write(json.dumps(dash,indent=2)+"\n")
