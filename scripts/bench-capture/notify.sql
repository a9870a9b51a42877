begin;
insert into t(v) values (1);
select pg_notify('c', 'x');
commit;
