/// The seed's incident scenarios as runbooks, runnable locally end to end. Print one with
/// `lifeboat runbook show NAME`, adapt its vars (or pass `--var k=v`), run it with
/// `lifeboat runbook run builtin:NAME`.
public enum BuiltinRunbooks {
    public static let all: [String: String] = [
        "emergency-failover": emergencyFailover, "database-corruption": databaseCorruption, "service-outage": serviceOutage,
        "bad-deployment": badDeployment, "accidental-deletion": accidentalDeletion, "ransomware": ransomware,
        "regional-outage": regionalOutage, "aws-emergency-failover": awsEmergencyFailover, "aws-service-outage": awsServiceOutage,
        "terraform-destroy": terraformDestroy, "aws-restore-drill": awsRestoreDrill, "aws-regional-outage": awsRegionalOutage,
        "aws-network-failure": awsNetworkFailure, "aws-alb-failure": awsALBFailure, "aws-promote-rename": awsPromoteRename,
        "aws-promote-endpoint": awsPromoteEndpoint, "aws-pitr-drill": awsPITRDrill,
    ]

    static let awsPITRDrill = """
        name: aws-pitr-drill
        description: >
          The seed's monthly point-in-time test on Aurora, for `lifeboat drill run --scenario
          point-in-time --runbook builtin:aws-pitr-drill` (or serve's aws.schedule.drill): restore the
          cluster's latest restorable point into a new cluster with an instance, verify it over its
          endpoint, delete the drill cluster. The RPO is how far that point trailed the drill's
          restore request; clean-up does not count toward the RTO.
        vars:
          region: us-east-1
          db_cluster: omnirapeutic-production
          drill_cluster: omnirapeutic-production-pitr-drill
          subnet_group: omnirapeutic-production-aurora-subnet-group
          security_groups: ""
          instance_class: db.serverless
          min_capacity: "0.5"
          max_capacity: "1.0"
          db_port: "5432"
          db_user: postgres
          db_name: postgres
          db_password_env: PGPASSWORD
          verify_sql: "SELECT 1"
        steps:
          - name: restore
            action: aws.rds.restore
            with:
              region: "${vars.region}"
              source_cluster: "${vars.db_cluster}"
              target_cluster: "${vars.drill_cluster}"
              subnet_group: "${vars.subnet_group}"
              security_groups: "${vars.security_groups}"
              instance_class: "${vars.instance_class}"
              min_capacity: "${vars.min_capacity}"
              max_capacity: "${vars.max_capacity}"
            timeout: 2h
          - name: verify
            action: verify
            with:
              host: "${steps.restore.endpoint}"
              port: "${vars.db_port}"
              user: "${vars.db_user}"
              database: "${vars.db_name}"
              password_env: "${vars.db_password_env}"
              checks:
                - { name: application query, sql: "${vars.verify_sql}" }
            retries: 20
            retry_delay: 15s
            on_failure:
              - name: drop-cluster-after-failure
                action: aws.rds.delete-cluster
                with: { region: "${vars.region}", cluster: "${vars.drill_cluster}" }
                rto: false
          - name: drop-drill-cluster
            action: aws.rds.delete-cluster
            with: { region: "${vars.region}", cluster: "${vars.drill_cluster}" }
            rto: false
        """

    static let awsNetworkFailure = """
        name: aws-network-failure
        description: >
          The seed's VPC/networking failure (RTO 45 minutes): diagnose the VPC (internet and NAT
          gateways, route tables and blackhole routes, security groups), plan and, after a look at the
          plan, apply `terraform apply -target=module.vpc`, then check the network is whole again and
          the services run.
        production: true
        vars:
          region: us-east-1
          vpc: omnirapeutic-production-vpc
          tf_dir: /srv/infrastructure/production
          tf_target: module.vpc
          ecs_cluster: omnirapeutic-production
          services: "omnirapeutic-production-api,omnirapeutic-production-web,omnirapeutic-production-worker"
        steps:
          - name: diagnose
            action: aws.network.diagnose
            with: { region: "${vars.region}", vpc: "${vars.vpc}" }
          - name: terraform-plan
            action: shell
            with: { command: "terraform -chdir=${vars.tf_dir} init -input=false && terraform -chdir=${vars.tf_dir} plan -input=false -target=${vars.tf_target} -out=lifeboat-network.plan" }
            timeout: 30m
          - name: terraform-apply
            action: shell
            with: { command: "terraform -chdir=${vars.tf_dir} apply -input=false lifeboat-network.plan" }
            confirm: "Problems found: ${steps.diagnose.problems}. Apply the plan above (-target=${vars.tf_target})?"
            timeout: 1h
        expect:
          - name: network-whole
            action: aws.network.diagnose
            with: { region: "${vars.region}", vpc: "${vars.vpc}", fail_on_problems: true }
            retries: 10
            retry_delay: 30s
          - name: services-running
            action: aws.ecs.expect
            with: { region: "${vars.region}", cluster: "${vars.ecs_cluster}", services: "${vars.services}" }
        """

    static let awsALBFailure = """
        name: aws-alb-failure
        description: >
          The seed's ALB failure (RTO 10 minutes): diagnose the load balancer (state, listeners, target
          groups and their health), plan and, after a look at the plan, apply
          `terraform apply -target=module.alb`, then wait until its targets are healthy again.
        production: true
        vars:
          region: us-east-1
          load_balancer: omnirapeutic-production-alb
          tf_dir: /srv/infrastructure/production
          tf_target: module.alb
        steps:
          - name: diagnose
            action: aws.elb.diagnose
            with: { region: "${vars.region}", name: "${vars.load_balancer}" }
          - name: terraform-plan
            action: shell
            with: { command: "terraform -chdir=${vars.tf_dir} init -input=false && terraform -chdir=${vars.tf_dir} plan -input=false -target=${vars.tf_target} -out=lifeboat-alb.plan" }
            timeout: 30m
          - name: terraform-apply
            action: shell
            with: { command: "terraform -chdir=${vars.tf_dir} apply -input=false lifeboat-alb.plan" }
            confirm: "Problems found: ${steps.diagnose.problems}. Apply the plan above (-target=${vars.tf_target})?"
            timeout: 30m
        expect:
          - name: targets-healthy
            action: aws.elb.diagnose
            with: { region: "${vars.region}", name: "${vars.load_balancer}", fail_on_problems: true }
            retries: 20
            retry_delay: 15s
        """

    static let awsPromoteRename = """
        name: aws-promote-rename
        description: >
          Promote a restored Aurora cluster by name: a final snapshot of production, then production is
          renamed out of the way (kept, for the investigation) and the restored cluster takes its name,
          so every client's endpoint stays. Stop the application first (the failover runbooks do).
          Safe to run again after a stop between the renames; `--var undo=true` swaps them back.
        production: true
        vars:
          region: us-east-1
          production: omnirapeutic-production
          restored: omnirapeutic-production-restored
          retired_name: omnirapeutic-production-failed
          undo: "false"
        steps:
          - name: final-snapshot
            description: the seed's "take final snapshot of current production cluster" (skipped when an earlier attempt renamed it already)
            action: aws.rds.snapshot
            with: { region: "${vars.region}", cluster: "${vars.production}", if_exists: true, tags: { Purpose: pre-promotion, CreatedBy: lifeboat } }
          - name: promote
            action: aws.rds.promote
            with: { region: "${vars.region}", production: "${vars.production}", restored: "${vars.restored}", retired_name: "${vars.retired_name}", undo: "${vars.undo}" }
            confirm: "Rename ${vars.production} and ${vars.restored} (undo=${vars.undo})? Connections to both drop while they are renamed."
            timeout: 1h
        expect:
          - name: production-available
            action: aws.rds.expect
            with: { region: "${vars.region}", cluster: "${vars.production}" }
        """

    static let awsPromoteEndpoint = """
        name: aws-promote-endpoint
        description: >
          Promote a restored Aurora cluster by endpoint (the seed's "Update ECS task definitions with
          this endpoint"): new task definition revisions with the restored cluster's endpoint, the
          services moved to them and redeployed. Undo with aws.ecs.set-task-definitions and the
          point step's previous_task_definitions.
        production: true
        vars:
          region: us-east-1
          ecs_cluster: omnirapeutic-production
          services: "omnirapeutic-production-api,omnirapeutic-production-web,omnirapeutic-production-worker"
          restored: omnirapeutic-production-restored
          db_host_variable: DB_HOST
        steps:
          - name: restored
            action: aws.rds.expect
            with: { region: "${vars.region}", cluster: "${vars.restored}" }
          - name: point
            action: aws.ecs.point-database
            with:
              region: "${vars.region}"
              cluster: "${vars.ecs_cluster}"
              services: "${vars.services}"
              database_endpoint: "${steps.restored.endpoint}"
              variable: "${vars.db_host_variable}"
            confirm: "Point ${vars.services} at ${steps.restored.endpoint}?"
        expect:
          - name: services-steady
            action: aws.ecs.expect
            with: { region: "${vars.region}", cluster: "${vars.ecs_cluster}", services: "${vars.services}" }
        """

    static let awsRegionalOutage = """
        name: aws-regional-outage
        description: >
          Scenario 3 on AWS, when the outage lasts: rebuild the infrastructure in the second region with
          Terraform first (the subnet group and security group the database needs are made there), restore
          the newest snapshot copied to that region (aws.rds.copy-snapshot, under its key) into a new
          cluster with the groups Terraform just made, verify the database, start the services, and
          point DNS at the second region.
        production: true
        vars:
          primary_region: us-east-1
          dr_region: us-west-2
          dr_snapshot: ""
          dr_cluster: omnirapeutic-production-dr
          kms_key_id: ""
          tf_dir: /srv/infrastructure/dr
          ecs_cluster: omnirapeutic-dr
          services: "omnirapeutic-dr-api,omnirapeutic-dr-web,omnirapeutic-dr-worker"
          desired_count: "2"
          min_capacity: "0.5"
          max_capacity: "1.0"
          zone_id: ""
          dns_name: api.omnirapeutic.example
          dr_app_target: ""
          db_port: "5432"
          db_user: postgres
          db_name: postgres
          db_password_env: PGPASSWORD
          verify_sql: "SELECT 1"
        steps:
          - name: declare-regional-failover
            action: wait
            with: { duration: 0s }
            confirm: "Is ${vars.primary_region} confirmed down for long enough to fail over to ${vars.dr_region} (AWS Health Dashboard)?"
          - name: rebuild-infrastructure
            action: shell
            with: { command: "terraform -chdir=${vars.tf_dir} init -input=false && terraform -chdir=${vars.tf_dir} apply -input=false -auto-approve" }
            confirm: "Run terraform apply in ${vars.tf_dir} for ${vars.dr_region}?"
            timeout: 2h
          - name: terraform-outputs
            description: the ids the apply made (the seed's `terraform output -raw aurora_security_group_id`)
            action: terraform.output
            with: { dir: "${vars.tf_dir}" }
          - name: restore-in-second-region
            action: aws.rds.restore
            with:
              region: "${vars.dr_region}"
              snapshot: "${vars.dr_snapshot}"
              target_cluster: "${vars.dr_cluster}"
              subnet_group: "${steps.terraform-outputs.aurora_subnet_group_name}"
              security_groups: "${steps.terraform-outputs.aurora_security_group_id}"
              kms_key_id: "${vars.kms_key_id}"
              instance_class: db.serverless
              min_capacity: "${vars.min_capacity}"
              max_capacity: "${vars.max_capacity}"
            timeout: 4h
          - name: verify-database
            action: verify
            with:
              host: "${steps.restore-in-second-region.endpoint}"
              port: "${vars.db_port}"
              user: "${vars.db_user}"
              database: "${vars.db_name}"
              password_env: "${vars.db_password_env}"
              checks:
                - { name: application query, sql: "${vars.verify_sql}" }
            retries: 20
            retry_delay: 15s
          - name: start-services
            action: aws.ecs.scale
            with: { region: "${vars.dr_region}", cluster: "${vars.ecs_cluster}", services: "${vars.services}", desired_count: "${vars.desired_count}", force_new_deployment: true }
          - name: switch-dns
            action: aws.route53.switch
            with: { zone_id: "${vars.zone_id}", name: "${vars.dns_name}", value: "${vars.dr_app_target}" }
            confirm: "Point ${vars.dns_name} at ${vars.dr_app_target} in ${vars.dr_region}?"
        expect:
          - name: dr-database-available
            action: aws.rds.expect
            with: { region: "${vars.dr_region}", cluster: "${vars.dr_cluster}" }
          - name: dr-services-running
            action: aws.ecs.expect
            with: { region: "${vars.dr_region}", cluster: "${vars.ecs_cluster}", services: "${vars.services}", desired_count: "${vars.desired_count}" }
        """

    static let awsRestoreDrill = """
        name: aws-restore-drill
        description: >
          The seed's monthly test on Aurora, for `lifeboat drill run --scenario snapshot-restore
          --runbook builtin:aws-restore-drill`: snapshot the cluster, restore the snapshot into a new
          cluster with an instance, verify it over its endpoint, then delete the drill cluster and the
          snapshot (clean-up does not count toward the RTO, and runs even when a step fails).
        vars:
          region: us-east-1
          db_cluster: omnirapeutic-production
          drill_cluster: omnirapeutic-production-drill
          subnet_group: omnirapeutic-production-aurora-subnet-group
          security_groups: ""
          instance_class: db.serverless
          min_capacity: "0.5"
          max_capacity: "1.0"
          db_port: "5432"
          db_user: postgres
          db_name: postgres
          db_password_env: PGPASSWORD
          verify_sql: "SELECT 1"
        steps:
          - name: snapshot
            action: aws.rds.snapshot
            with: { region: "${vars.region}", cluster: "${vars.db_cluster}", tags: { Purpose: dr-drill, CreatedBy: lifeboat } }
          - name: restore
            action: aws.rds.restore
            with:
              region: "${vars.region}"
              snapshot: "${steps.snapshot.snapshot_id}"
              target_cluster: "${vars.drill_cluster}"
              subnet_group: "${vars.subnet_group}"
              security_groups: "${vars.security_groups}"
              instance_class: "${vars.instance_class}"
              min_capacity: "${vars.min_capacity}"
              max_capacity: "${vars.max_capacity}"
            timeout: 2h
            on_failure:
              - name: drop-snapshot-after-failure
                action: aws.rds.delete-snapshot
                with: { region: "${vars.region}", snapshot: "${steps.snapshot.snapshot_id}" }
                rto: false
          - name: verify
            action: verify
            with:
              host: "${steps.restore.endpoint}"
              port: "${vars.db_port}"
              user: "${vars.db_user}"
              database: "${vars.db_name}"
              password_env: "${vars.db_password_env}"
              checks:
                - { name: application query, sql: "${vars.verify_sql}" }
            retries: 20
            retry_delay: 15s
            on_failure:
              - name: drop-cluster-after-failure
                action: aws.rds.delete-cluster
                with: { region: "${vars.region}", cluster: "${vars.drill_cluster}" }
                rto: false
              - name: drop-snapshot-after-failed-verify
                action: aws.rds.delete-snapshot
                with: { region: "${vars.region}", snapshot: "${steps.snapshot.snapshot_id}" }
                rto: false
          - name: drop-drill-cluster
            action: aws.rds.delete-cluster
            with: { region: "${vars.region}", cluster: "${vars.drill_cluster}" }
            rto: false
          - name: drop-snapshot
            action: aws.rds.delete-snapshot
            with: { region: "${vars.region}", snapshot: "${steps.snapshot.snapshot_id}" }
            rto: false
        """

    static let terraformDestroy = """
        name: terraform-destroy
        description: >
          Scenario 4, accidental terraform destroy: make the Terraform state in its versioned S3 bucket
          what it was before the destroy, plan and (after a look at the plan) apply to recreate the
          infrastructure, read the ids the apply made (a recreated security group has a new id), restore
          the database from its last snapshot into a new cluster in those groups, verify it, and have
          Terraform and the application pointed at it.
        production: true
        vars:
          region: us-east-1
          state_url: s3://omnirapeutic-terraform-state/production/terraform.tfstate
          destroyed_at: ""
          tf_dir: /srv/infrastructure/production
          db_snapshot: ""
          restored_cluster: omnirapeutic-production-restored
          subnet_group: omnirapeutic-production-aurora-subnet-group
          kms_key_id: ""
          min_capacity: "0.5"
          max_capacity: "1.0"
          db_port: "5432"
          db_user: postgres
          db_name: postgres
          db_password_env: PGPASSWORD
          verify_sql: "SELECT 1"
        steps:
          - name: restore-state
            action: s3.restore-version
            with: { region: "${vars.region}", url: "${vars.state_url}", before: "${vars.destroyed_at}" }
            confirm: "Make ${vars.state_url} what it was before ${vars.destroyed_at}? (The current version stays in the bucket's history.)"
          - name: terraform-plan
            action: shell
            with: { command: "terraform -chdir=${vars.tf_dir} init -input=false && terraform -chdir=${vars.tf_dir} plan -input=false -out=lifeboat-recreate.plan" }
            timeout: 30m
          - name: terraform-apply
            action: shell
            with: { command: "terraform -chdir=${vars.tf_dir} apply -input=false lifeboat-recreate.plan" }
            confirm: "Apply the plan above to recreate the infrastructure?"
            timeout: 2h
          - name: terraform-outputs
            description: the ids the apply made (the seed's `terraform output -raw aurora_security_group_id`)
            action: terraform.output
            with: { dir: "${vars.tf_dir}" }
          - name: restore-database
            action: aws.rds.restore
            with:
              region: "${vars.region}"
              snapshot: "${vars.db_snapshot}"
              target_cluster: "${vars.restored_cluster}"
              security_groups: "${steps.terraform-outputs.aurora_security_group_id}"
              subnet_group: "${vars.subnet_group}"
              kms_key_id: "${vars.kms_key_id}"
              instance_class: db.serverless
              min_capacity: "${vars.min_capacity}"
              max_capacity: "${vars.max_capacity}"
            timeout: 4h
          - name: verify-database
            action: verify
            with:
              host: "${steps.restore-database.endpoint}"
              port: "${vars.db_port}"
              user: "${vars.db_user}"
              database: "${vars.db_name}"
              password_env: "${vars.db_password_env}"
              checks:
                - { name: application query, sql: "${vars.verify_sql}" }
            retries: 20
            retry_delay: 15s
          - name: point-at-restored-database
            action: wait
            with: { duration: 0s }
            confirm: "Point Terraform (import or snapshot_identifier) and the application at ${steps.restore-database.endpoint}; confirm when done."
        expect:
          - name: restored-database-available
            action: aws.rds.expect
            with: { region: "${vars.region}", cluster: "${vars.restored_cluster}" }
        """

    static let awsEmergencyFailover = """
        name: aws-emergency-failover
        description: >
          The seed's emergency database failover on AWS, step for step: scale the application services
          to 0, snapshot the current Aurora cluster, restore the point 15 minutes back into a new
          cluster (production's security groups, subnet group and KMS key, a serverless instance at
          0.5-1.0 ACU given in the restore itself), wait for its writer, verify it over its endpoint,
          have the task definitions pointed at it, then scale the services back with a new deployment
          to the counts they had before the first attempt (2, the seed's count, for any found at 0),
          and check every service is running steadily and the cluster available.
        production: true
        vars:
          region: us-east-1
          ecs_cluster: omnirapeutic-production
          services: "omnirapeutic-production-api,omnirapeutic-production-web,omnirapeutic-production-worker"
          desired_count: "2"
          db_cluster: omnirapeutic-production
          failover_cluster: omnirapeutic-production-failover
          minutes_ago: "15"
          security_groups: ""
          subnet_group: omnirapeutic-production-aurora-subnet-group
          kms_key_id: ""
          min_capacity: "0.5"
          max_capacity: "1.0"
          db_port: "5432"
          db_user: postgres
          db_name: postgres
          db_password_env: PGPASSWORD
          db_host_variable: DB_HOST
          verify_sql: "SELECT 1"
        steps:
          - name: stop-application
            action: aws.ecs.scale
            with: { region: "${vars.region}", cluster: "${vars.ecs_cluster}", services: "${vars.services}", desired_count: "0" }
            confirm: "Scale ${vars.services} to 0? The application serves nothing until the last step."
          - name: snapshot-current
            description: the damaged cluster, kept for the investigation; the failover goes on if it fails
            action: aws.rds.snapshot
            with: { region: "${vars.region}", cluster: "${vars.db_cluster}", tags: { Purpose: emergency-failover, CreatedBy: lifeboat-runbook } }
            on_failure: continue
          - name: restore
            action: aws.rds.restore
            with:
              region: "${vars.region}"
              source_cluster: "${vars.db_cluster}"
              target_cluster: "${vars.failover_cluster}"
              minutes_ago: "${vars.minutes_ago}"
              security_groups: "${vars.security_groups}"
              subnet_group: "${vars.subnet_group}"
              kms_key_id: "${vars.kms_key_id}"
              instance_class: db.serverless
              min_capacity: "${vars.min_capacity}"
              max_capacity: "${vars.max_capacity}"
            timeout: 4h
          - name: verify-restored
            action: verify
            with:
              host: "${steps.restore.endpoint}"
              port: "${vars.db_port}"
              user: "${vars.db_user}"
              database: "${vars.db_name}"
              password_env: "${vars.db_password_env}"
              checks:
                - { name: application query, sql: "${vars.verify_sql}" }
            retries: 20
            retry_delay: 15s
          - name: point-application
            description: new task definition revisions whose database endpoint is the restored cluster's (undo with aws.ecs.set-task-definitions and the previous_task_definitions output)
            action: aws.ecs.point-database
            with:
              region: "${vars.region}"
              cluster: "${vars.ecs_cluster}"
              services: "${vars.services}"
              database_endpoint: "${steps.restore.endpoint}"
              variable: "${vars.db_host_variable}"
            confirm: "Register task definitions pointing ${vars.services} at ${steps.restore.endpoint}?"
          - name: restart-application
            action: aws.ecs.scale
            with:
              region: "${vars.region}"
              cluster: "${vars.ecs_cluster}"
              services: "${vars.services}"
              counts: "${steps.stop-application.previous_counts}"
              desired_count: "${vars.desired_count}"
              force_new_deployment: true
        expect:
          - name: services-running
            action: aws.ecs.expect
            with:
              region: "${vars.region}"
              cluster: "${vars.ecs_cluster}"
              services: "${vars.services}"
              counts: "${steps.stop-application.previous_counts}"
              desired_count: "${vars.desired_count}"
          - name: failover-cluster-available
            action: aws.rds.expect
            with: { region: "${vars.region}", cluster: "${vars.failover_cluster}" }
        """

    static let awsServiceOutage = """
        name: aws-service-outage
        description: >
          Scenario 2 on ECS: all tasks down. Check the service, force a new deployment and wait until
          it is stable; if it does not stabilise, roll back to the previous task definition revision.
        production: true
        vars:
          region: us-east-1
          ecs_cluster: omnirapeutic-production
          service: omnirapeutic-production-api
          stable_timeout: 15m
        steps:
          - name: status
            action: aws.ecs.status
            with: { region: "${vars.region}", cluster: "${vars.ecs_cluster}", service: "${vars.service}" }
          - name: redeploy
            action: aws.ecs.redeploy
            with: { region: "${vars.region}", cluster: "${vars.ecs_cluster}", service: "${vars.service}", timeout: "${vars.stable_timeout}" }
            confirm: "Force a new deployment of ${vars.service}?"
            on_failure:
              - name: rollback
                action: aws.ecs.rollback
                with: { region: "${vars.region}", cluster: "${vars.ecs_cluster}", service: "${vars.service}", timeout: "${vars.stable_timeout}" }
        expect:
          - name: service-steady
            action: aws.ecs.expect
            with: { region: "${vars.region}", cluster: "${vars.ecs_cluster}", service: "${vars.service}", timeout: "${vars.stable_timeout}" }
        """

    static let emergencyFailover = """
        name: emergency-failover
        description: >
          The seed's emergency database failover: stop the application, take a final backup of the
          current cluster, restore the most recent point into a new cluster, verify it, point the
          application at it, restart the application and check its health.
        production: true
        vars:
          restore_dir: /var/lib/postgresql/failover
          restore_port: "5433"
          socket_dir: /tmp
          endpoint_file: /etc/app/database
          endpoint_value: "host=${vars.socket_dir} port=${vars.restore_port} dbname=postgres"
          stop_app: "systemctl stop app"
          start_app: "systemctl start app"
          health_url: http://127.0.0.1:8080/health
          verify_sql: "SELECT 1"
        steps:
          - name: stop-application
            action: service.stop
            with: { stop: "${vars.stop_app}" }
            confirm: "Stop the application? It serves nothing until the restart step."
          - name: final-backup
            description: the current cluster may be too damaged to back up; the failover goes on
            action: backup
            with: { manual: true, tags: { Purpose: emergency-failover, CreatedBy: lifeboat-runbook } }
            on_failure: continue
          - name: restore-latest
            action: restore
            with: { target: latest, to: "${vars.restore_dir}", port: "${vars.restore_port}", socket_dir: "${vars.socket_dir}", archive_mode: keep }
            timeout: 4h
          - name: verify-restored
            action: verify
            with:
              data_dir: "${steps.restore-latest.data_dir}"
              port: "${steps.restore-latest.port}"
              socket_dir: "${steps.restore-latest.socket_dir}"
              checks:
                - { name: application query, sql: "${vars.verify_sql}" }
          - name: switch-endpoint
            action: endpoint.switch
            with: { file: "${vars.endpoint_file}", value: "${vars.endpoint_value}" }
            confirm: "Point the application at the restored cluster?"
          - name: start-application
            action: service.start
            with: { start: "${vars.start_app}" }
          - name: health-check
            action: http.check
            with: { url: "${vars.health_url}", attempts: 30, interval: 1s }
        """

    static let databaseCorruption = """
        name: database-corruption
        description: >
          Scenario 1: stop writes, snapshot the corrupted cluster for forensics, restore the last known
          good time into a new cluster, verify, point the application at it, resume service.
        production: true
        vars:
          last_good_time: "2026-01-01T00:00:00Z"
          restore_dir: /var/lib/postgresql/restored
          restore_port: "5433"
          socket_dir: /tmp
          endpoint_file: /etc/app/database
          endpoint_value: "host=${vars.socket_dir} port=${vars.restore_port} dbname=postgres"
          stop_app: "systemctl stop app"
          start_app: "systemctl start app"
          health_url: http://127.0.0.1:8080/health
          verify_sql: "SELECT 1"
        steps:
          - name: stop-writes
            action: service.stop
            with: { stop: "${vars.stop_app}" }
            confirm: "Stop the application to stop writes to the corrupted database?"
          - name: snapshot-corrupted
            action: backup
            with: { manual: true, tags: { Purpose: corruption-forensics } }
            on_failure: continue
          - name: restore-last-good
            action: restore
            with: { target: time, time: "${vars.last_good_time}", to: "${vars.restore_dir}", port: "${vars.restore_port}", socket_dir: "${vars.socket_dir}", archive_mode: keep }
            timeout: 4h
          - name: verify-restored
            action: verify
            with: { data_dir: "${steps.restore-last-good.data_dir}", port: "${steps.restore-last-good.port}", socket_dir: "${vars.socket_dir}", checks: [ { sql: "${vars.verify_sql}" } ] }
          - name: switch-endpoint
            action: endpoint.switch
            with: { file: "${vars.endpoint_file}", value: "${vars.endpoint_value}" }
            confirm: "Point the application at the restored cluster?"
          - name: resume-service
            action: service.start
            with: { start: "${vars.start_app}" }
          - name: health-check
            action: http.check
            with: { url: "${vars.health_url}", attempts: 30, interval: 1s }
        """

    static let serviceOutage = """
        name: service-outage
        description: >
          Scenario 2: all application instances down. Check status, restart; if it stays unhealthy,
          roll back to the previous release.
        production: true
        vars:
          status_app: "systemctl status app"
          restart_app: "systemctl restart app"
          rollback_app: "false"
          health_url: http://127.0.0.1:8080/health
        steps:
          - name: status
            action: service.status
            with: { status: "${vars.status_app}" }
            on_failure: continue
          - name: restart
            action: service.restart
            with: { restart: "${vars.restart_app}" }
          - name: health-after-restart
            action: http.check
            with: { url: "${vars.health_url}", attempts: 20, interval: 1s }
            on_failure:
              - name: rollback
                action: service.rollback
                with: { rollback: "${vars.rollback_app}" }
              - name: health-after-rollback
                action: http.check
                with: { url: "${vars.health_url}", attempts: 20, interval: 1s }
        """

    static let badDeployment = """
        name: bad-deployment
        description: Human error (bad deployment) - roll back to the previous release and check health.
        production: true
        vars:
          rollback_app: "false"
          health_url: http://127.0.0.1:8080/health
        steps:
          - name: rollback
            action: service.rollback
            with: { rollback: "${vars.rollback_app}" }
            confirm: "Roll the application back to the previous release?"
          - name: health-check
            action: http.check
            with: { url: "${vars.health_url}", attempts: 30, interval: 1s }
        """

    static let accidentalDeletion = """
        name: accidental-deletion
        description: >
          Accidental deletion: restore to a point before the mistake into an isolated scratch cluster
          (no archiving, loopback only), check the table, copy its rows back into production, drop the
          scratch cluster.
        production: true
        vars:
          before_mistake: "2026-01-01T00:00:00Z"
          table: public.users
          scratch_dir: /tmp/lifeboat-recover-table
          scratch_port: "5439"
          socket_dir: /tmp
          production_conn: "host=/var/run/postgresql port=5432 dbname=postgres"
          pg_bin: /usr/lib/postgresql/15/bin
        steps:
          - name: restore-before-mistake
            action: restore
            with: { target: time, time: "${vars.before_mistake}", to: "${vars.scratch_dir}", port: "${vars.scratch_port}", socket_dir: "${vars.socket_dir}", archive_mode: "off" }
          - name: check-table
            action: verify
            with: { data_dir: "${vars.scratch_dir}", port: "${vars.scratch_port}", socket_dir: "${vars.socket_dir}", amcheck: false, checks: [ { name: table has rows, sql: "SELECT count(*) FROM ${vars.table}", min: 1 } ] }
          - name: copy-rows-back
            action: shell
            with: { command: "${vars.pg_bin}/pg_dump -h ${vars.socket_dir} -p ${vars.scratch_port} --data-only -t ${vars.table} postgres | ${vars.pg_bin}/psql -v ON_ERROR_STOP=1 '${vars.production_conn}'" }
            confirm: "Copy the rows of the table from the restored copy into production?"
          - name: drop-scratch
            action: postgres.stop
            with: { data_dir: "${vars.scratch_dir}", port: "${vars.scratch_port}", mode: immediate }
        """

    static let ransomware = """
        name: ransomware
        description: >
          Security breach / ransomware: verify the clean (second or immutable) repository given with
          --config, then restore it into an isolated target that does not archive and listens on
          loopback only. Investigate before promoting anything.
        vars:
          restore_dir: /var/lib/postgresql/isolated
          restore_port: "5440"
          socket_dir: /tmp
        steps:
          - name: verify-clean-repository
            action: repository.verify
          - name: restore-isolated
            action: restore
            with: { target: latest, to: "${vars.restore_dir}", port: "${vars.restore_port}", socket_dir: "${vars.socket_dir}", archive_mode: "off" }
          - name: verify-restored
            action: verify
            with: { data_dir: "${vars.restore_dir}", port: "${vars.restore_port}", socket_dir: "${vars.socket_dir}" }
        """

    static let regionalOutage = """
        name: regional-outage
        description: >
          Regional outage: restore from the second region's repository (give its configuration with
          --config) into a new cluster here, verify, point the application at it and start it.
        production: true
        vars:
          restore_dir: /var/lib/postgresql/dr-region
          restore_port: "5433"
          socket_dir: /tmp
          endpoint_file: /etc/app/database
          endpoint_value: "host=${vars.socket_dir} port=${vars.restore_port} dbname=postgres"
          start_app: "systemctl start app"
          health_url: http://127.0.0.1:8080/health
        steps:
          - name: verify-second-repository
            action: repository.verify
          - name: restore-latest
            action: restore
            with: { target: latest, to: "${vars.restore_dir}", port: "${vars.restore_port}", socket_dir: "${vars.socket_dir}", archive_mode: keep }
            timeout: 4h
          - name: verify-restored
            action: verify
            with: { data_dir: "${vars.restore_dir}", port: "${vars.restore_port}", socket_dir: "${vars.socket_dir}" }
          - name: switch-endpoint
            action: endpoint.switch
            with: { file: "${vars.endpoint_file}", value: "${vars.endpoint_value}" }
            confirm: "Point the application at the cluster restored from the second region?"
          - name: start-application
            action: service.start
            with: { start: "${vars.start_app}" }
          - name: health-check
            action: http.check
            with: { url: "${vars.health_url}", attempts: 30, interval: 1s }
        """

    /// Runbook text for `builtin:NAME` or a file path.
    public static func load(_ reference: String) throws -> String {
        if reference.hasPrefix("builtin:") {
            let name = String(reference.dropFirst("builtin:".count))
            guard let text = all[name] else {
                throw LifeboatError(.notFound, "no built-in runbook '\(name)'", hint: "built-ins: \(all.keys.sorted().joined(separator: ", "))")
            }
            return text
        }
        guard let text = try? String(contentsOfFile: reference, encoding: .utf8) else {
            throw LifeboatError(.invalidUsage, "cannot read runbook \(reference)", hint: "give a YAML file or builtin:NAME")
        }
        return text
    }
}

import LifeboatCore
