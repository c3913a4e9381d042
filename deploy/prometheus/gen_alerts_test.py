#!/usr/bin/env python3
# Writes alerts_test.yml (promtool unit tests of alerts.yml) from the cases below;
# each expected annotation is rendered here from alerts.yml's templates, so editing
# an annotation means re-running this. Needs PyYAML.
import os, re, yaml
HERE = os.path.dirname(os.path.abspath(__file__))
alerts = {r['alert']: r for g in yaml.safe_load(open('' + HERE + '/alerts.yml'))['groups'] for r in g['rules']}

def render(text, labels, value):
    def sub(m):
        expr = m.group(1).strip()
        if expr.startswith('$labels.'):
            return labels.get(expr[len('$labels.'):], '')
        assert expr.startswith('$value'), expr
        return value
    return re.sub(r'\{\{(.*?)\}\}', sub, text)

def fired(alert, labels, value=''):
    a = alerts[alert]
    out_labels = dict(labels); out_labels['severity'] = a['labels']['severity']
    return {'exp_labels': out_labels,
            'exp_annotations': {k: render(v, labels, value) for k, v in a['annotations'].items()}}

S = lambda name, labels: name + '{' + ','.join(f'{k}="{v}"' for k, v in labels.items()) + '}'
INST = {'job': 'sediment', 'instance': 'host-1:9598'}
def comp(cid, kind, typ): return dict(INST, component_id=cid, component_kind=kind, component_type=typ)
ARCHIVE = comp('archive', 'sink', 'file')
FORWARD = comp('forward', 'sink', 'http')
HTTP_IN = comp('http_in', 'source', 'http')
KAFKA = comp('from_kafka', 'source', 'kafka')
def key(l): return {k: l[k] for k in ('job', 'instance', 'component_id')}

tests = []
def test(comment, interval, series, cases):
    tests.append({'name': comment, 'interval': interval,
                  'input_series': [{'series': s, 'values': v} for s, v in series],
                  'alert_rule_test': [dict(eval_time=t, alertname=a, exp_alerts=e) for t, a, e in cases]})

# SedimentDown
up_a = dict(INST); up_b = dict(INST, instance='host-2:9598')
test('SedimentDown: one of two instances stops answering scrapes', '1m',
     [(S('up', up_a), '1 1 1 0 0 0 0 0 0 0'), (S('up', up_b), '1x9')],
     [('2m', 'SedimentDown', []), ('4m', 'SedimentDown', []),
      ('7m', 'SedimentDown', [fired('SedimentDown', up_a)])])
test('SedimentDown: the target is gone from service discovery', '1m',
     [(S('up', {'job': 'node', 'instance': 'host-1:9100'}), '1x9')],
     [('1m', 'SedimentDown', []), ('5m', 'SedimentDown', [fired('SedimentDown', {'job': 'sediment'})])])

# SedimentArchiveBacklogGrowing
saw = []  # steady traffic: an hour grows 1000 B/min, is uploaded at hh:10
for m in range(181):
    mm = m % 60
    saw.append((60 + mm) * 1000 if mm < 10 else mm * 1000)
test('SedimentArchiveBacklogGrowing: uploads stopped, the backlog only grows', '1m',
     [(S('sediment_archive_staged_bytes', ARCHIVE), '0+1000x150')],
     [('20m', 'SedimentArchiveBacklogGrowing', []),
      ('120m', 'SedimentArchiveBacklogGrowing', [fired('SedimentArchiveBacklogGrowing', ARCHIVE, '117.2ki')])])
test('SedimentArchiveBacklogGrowing: the hourly saw-tooth of steady traffic', '1m',
     [(S('sediment_archive_staged_bytes', ARCHIVE), ' '.join(map(str, saw)))],
     [(f'{t}m', 'SedimentArchiveBacklogGrowing', []) for t in (70, 100, 125, 130, 150, 170, 180)])

# SedimentUploadsFailing
created = dict(ARCHIVE, outcome='created'); present = dict(ARCHIVE, outcome='already_present')
test('SedimentUploadsFailing: retries and no object for 10 minutes', '1m',
     [(S('sediment_upload_retries_total', ARCHIVE), '0+1x30'),
      (S('sediment_archive_objects_total', created), '5x30'),
      (S('sediment_archive_objects_total', present), '0x30')],
     [('5m', 'SedimentUploadsFailing', []),
      ('25m', 'SedimentUploadsFailing', [fired('SedimentUploadsFailing', key(ARCHIVE))])])
test('SedimentUploadsFailing: retries, but objects are still written', '1m',
     [(S('sediment_upload_retries_total', ARCHIVE), '0+1x30'),
      (S('sediment_archive_objects_total', created), '0+1x30'),
      (S('sediment_archive_objects_total', present), '0x30')],
     [('25m', 'SedimentUploadsFailing', [])])
test('SedimentUploadsFailing: no retries and no object (a quiet hour)', '1m',
     [(S('sediment_upload_retries_total', ARCHIVE), '3x30'),
      (S('sediment_archive_objects_total', created), '5x30')],
     [('25m', 'SedimentUploadsFailing', [])])

# SedimentHttpSinkFailing
ok = dict(FORWARD, status='200'); busy = dict(FORWARD, status='503')
test('SedimentHttpSinkFailing: the receiver answers only 503', '1m',
     [(S('sediment_upload_retries_total', FORWARD), '0+2x30'),
      (S('sediment_http_sink_requests_total', busy), '0+2x30'),
      (S('sediment_http_sink_requests_total', ok), '10x30')],
     [('5m', 'SedimentHttpSinkFailing', []),
      ('25m', 'SedimentHttpSinkFailing', [fired('SedimentHttpSinkFailing', key(FORWARD))])])
test('SedimentHttpSinkFailing: some retries, requests still accepted', '1m',
     [(S('sediment_upload_retries_total', FORWARD), '0+2x30'),
      (S('sediment_http_sink_requests_total', busy), '0+2x30'),
      (S('sediment_http_sink_requests_total', ok), '10+5x30')],
     [('25m', 'SedimentHttpSinkFailing', [])])

# SedimentHttp503High
c200 = dict(HTTP_IN, code='200'); c503 = dict(HTTP_IN, code='503')
test('SedimentHttp503High: 10% of requests refused', '1m',
     [(S('sediment_http_requests_total', c200), '0+90x20'), (S('sediment_http_requests_total', c503), '0+10x20')],
     [('3m', 'SedimentHttp503High', []),
      ('15m', 'SedimentHttp503High', [fired('SedimentHttp503High', key(HTTP_IN), '10%')])])
test('SedimentHttp503High: 2% of requests refused', '1m',
     [(S('sediment_http_requests_total', c200), '0+98x20'), (S('sediment_http_requests_total', c503), '0+2x20')],
     [('15m', 'SedimentHttp503High', [])])

# SedimentSourceSilent (10-minute samples: the rule looks back a day)
quiet = dict(HTTP_IN, component_id='quiet_in')
never = dict(HTTP_IN, component_id='never_in')
busy_src = dict(KAFKA)
test('SedimentSourceSilent: a source with traffic yesterday stops; one that never had traffic and one still busy do not alert', '10m',
     [(S('sediment_component_received_events_total', quiet), '0+100x150 15000x10'),
      (S('sediment_component_received_events_total', never), '0x160'),
      (S('sediment_component_received_events_total', busy_src), '0+100x160'),
      (S('sediment_component_received_events_total', comp('last_week', 'source', 'archive')), '0+100x100 10000x60')],
     [('1500m', 'SedimentSourceSilent', []),
      ('1560m', 'SedimentSourceSilent', [fired('SedimentSourceSilent', key(quiet))])])

# SedimentStagingDiskFilling
test('SedimentStagingDiskFilling: 85% full', '1m',
     [(S('sediment_staging_filesystem_avail_bytes', ARCHIVE), '15x10'), (S('sediment_staging_filesystem_size_bytes', ARCHIVE), '100x10')],
     [('3m', 'SedimentStagingDiskFilling', []),
      ('10m', 'SedimentStagingDiskFilling', [fired('SedimentStagingDiskFilling', ARCHIVE, '85%')])])
test('SedimentStagingDiskFilling: 50% full', '1m',
     [(S('sediment_staging_filesystem_avail_bytes', ARCHIVE), '50x10'), (S('sediment_staging_filesystem_size_bytes', ARCHIVE), '100x10')],
     [('10m', 'SedimentStagingDiskFilling', [])])

# SedimentKafkaLagGrowing
p0 = dict(KAFKA, topic='logs', partition='0')
lag_key = dict(key(KAFKA), topic='logs')
test('SedimentKafkaLagGrowing: consumption falls behind', '1m',
     [(S('sediment_kafka_consumer_lag', p0), '0+10x40')],
     [('10m', 'SedimentKafkaLagGrowing', []),
      ('35m', 'SedimentKafkaLagGrowing', [fired('SedimentKafkaLagGrowing', lag_key, '350')])])
test('SedimentKafkaLagGrowing: the saw-tooth of commits every 5 minutes, and a steady lag', '1m',
     [(S('sediment_kafka_consumer_lag', p0), ' '.join(['0 10 20 30 40'] * 9)),
      (S('sediment_kafka_consumer_lag', dict(p0, topic='audit')), '100x45')],
     [(f'{t}m', 'SedimentKafkaLagGrowing', []) for t in (20, 30, 40, 44)])

doc = {'rule_files': ['alerts.yml'], 'evaluation_interval': '1m', 'tests': tests}
header = ('# promtool unit tests of alerts.yml: every alert firing and not firing from\n'
          '# synthetic series. Run: promtool test rules deploy/prometheus/alerts_test.yml\n'
          '# (tests/production.rs runs it and checks that every alert has both kinds of case).\n')
class D(yaml.SafeDumper): pass
D.add_representer(str, lambda d, s: d.represent_scalar('tag:yaml.org,2002:str', s, style="'" if '"' in s else ('"' if ('{' in s or ':' in s or '$' in s or '`' in s) else None)))
open('' + HERE + '/alerts_test.yml', 'w').write(header + yaml.dump(doc, Dumper=D, sort_keys=False, width=100000, allow_unicode=True))
