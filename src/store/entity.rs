//! SeaORM entities: the rows as SQLite stores them. Not the API types, not the domain types;
//! `store` converts at its boundary.

pub mod deployment {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "deployments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub service: String,
        pub environment: String,
        pub version: String,
        pub requester: String,
        /// A JSON array of strings.
        pub work_refs: String,
        pub risk: Option<String>,
        pub rollback_plan: String,
        pub status: String,
        pub reviewed_by: Option<String>,
        /// Milliseconds since the Unix epoch, like every time column.
        pub reviewed_at: Option<i64>,
        pub created_at: i64,
        pub updated_at: i64,
        /// Set when the client gave one; unique.
        pub idempotency_key: Option<String>,
        pub required_approvals: i64,
        pub promoted_from: Option<String>,
        pub release_notes: Option<String>,
        pub started_at: Option<i64>,
        /// Indexed for the STARTED deployments that have one.
        pub start_deadline: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(has_many = "super::event::Entity")]
        Event,
    }

    impl Related<super::event::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Event.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "deployment_events")]
    pub struct Model {
        /// The global sequence: commit order across all deployments.
        #[sea_orm(primary_key)]
        pub seq: i64,
        pub id: String,
        pub deployment_id: String,
        pub service: String,
        pub environment: String,
        pub kind: String,
        pub actor: String,
        pub note: Option<String>,
        pub from_status: Option<String>,
        pub to_status: String,
        pub occurred_at: i64,
        /// A JSON array of BlockerKind names: the guards the action overrode.
        pub overrides: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::deployment::Entity",
            from = "Column::DeploymentId",
            to = "super::deployment::Column::Id"
        )]
        Deployment,
    }

    impl Related<super::deployment::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Deployment.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod environment {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "environments")]
    pub struct Model {
        /// Trimmed; compared exactly.
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        /// UUIDv7, for `node(id)`; unique.
        pub id: String,
        pub position: i64,
        pub tier: String,
        pub required_approvals: i64,
        pub start_timeout_seconds: Option<i64>,
        pub updated_by: Option<String>,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
