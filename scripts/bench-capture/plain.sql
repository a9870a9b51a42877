begin;
insert into t(v) values (1);
commit;
