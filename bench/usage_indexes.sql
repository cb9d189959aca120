\timing on
\set t 1
-- variant A: plain table, btree on created_at (as migrated before 0006)
select min(created_at)::date + 10 as d from billing_usagerecord \gset
select count(*), sum(cost) from billing_usagerecord where tenant_id=:t and created_at >= :'d'::date and created_at < :'d'::date + 1;
select count(*), sum(cost) from billing_usagerecord where tenant_id=:t and created_at >= :'d'::date and created_at < :'d'::date + 1;
select count(*) from billing_usagerecord where created_at >= :'d'::date and created_at < :'d'::date + 1;
select count(*) from billing_usagerecord where created_at >= :'d'::date and created_at < :'d'::date + 1;
select date_trunc('day', created_at), count(*), sum(cost) from billing_usagerecord where tenant_id=:t and created_at >= now() - interval '30 days' group by 1 \g /dev/null
select date_trunc('day', created_at), count(*), sum(cost) from billing_usagerecord where tenant_id=:t and created_at >= now() - interval '30 days' group by 1 \g /dev/null
select pg_size_pretty(pg_relation_size('billing_usagerecord_created_at_bdce11ec')) as btree_size;
-- variant B: BRIN instead
create index usage_created_brin on billing_usagerecord using brin (created_at);
drop index billing_usagerecord_created_at_bdce11ec;
select pg_size_pretty(pg_relation_size('usage_created_brin')) as brin_size;
analyze billing_usagerecord;
select count(*), sum(cost) from billing_usagerecord where tenant_id=:t and created_at >= :'d'::date and created_at < :'d'::date + 1;
select count(*), sum(cost) from billing_usagerecord where tenant_id=:t and created_at >= :'d'::date and created_at < :'d'::date + 1;
select count(*) from billing_usagerecord where created_at >= :'d'::date and created_at < :'d'::date + 1;
select count(*) from billing_usagerecord where created_at >= :'d'::date and created_at < :'d'::date + 1;
-- variant C: monthly partitions (request_id unique only together with created_at)
create table usage_part (like billing_usagerecord including defaults) partition by range (created_at);
create table usage_part_2026_10 partition of usage_part for values from ('2026-10-01') to ('2026-11-01');
create table usage_part_2026_11 partition of usage_part for values from ('2026-11-01') to ('2026-12-01');
create table usage_part_2026_12 partition of usage_part for values from ('2026-12-01') to ('2027-01-01');
alter table usage_part add primary key (id, created_at);
create unique index on usage_part (request_id, created_at);
create index on usage_part (tenant_id, created_at);
create index on usage_part (api_key_id);
-- insert throughput into the partitioned table (all 10M rows, indexes in place)
insert into usage_part select * from billing_usagerecord;
analyze usage_part;
select count(*), sum(cost) from usage_part where tenant_id=:t and created_at >= :'d'::date and created_at < :'d'::date + 1;
select count(*), sum(cost) from usage_part where tenant_id=:t and created_at >= :'d'::date and created_at < :'d'::date + 1;
select count(*) from usage_part where created_at >= :'d'::date and created_at < :'d'::date + 1;
select count(*) from usage_part where created_at >= :'d'::date and created_at < :'d'::date + 1;
select date_trunc('day', created_at), count(*), sum(cost) from usage_part where tenant_id=:t and created_at >= now() - interval '30 days' group by 1 \g /dev/null
select date_trunc('day', created_at), count(*), sum(cost) from usage_part where tenant_id=:t and created_at >= now() - interval '30 days' group by 1 \g /dev/null
-- purge: a month partition
select count(*) from usage_part_2026_10;
alter table usage_part detach partition usage_part_2026_10;
drop table usage_part_2026_10;
-- purge: a day from the plain table, batched DELETE of 10,000 rows (BRIN in place)
select min(created_at)::date + 1 as purge_before from billing_usagerecord \gset
select count(*) from billing_usagerecord where created_at < :'purge_before'::date;
