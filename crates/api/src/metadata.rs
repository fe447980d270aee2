//! `$metadata`: the CSDL document of exactly what remediate serves, generated from the same model
//! the server uses. A committed copy (`docs/metadata.xml`) is checked against a fresh generation
//! by the tests, and every Graph type in it against Microsoft's CSDL
//! (`crates/api/fixtures/csdl-subset.xml`: a copy of the project's `shared/spec/csdl-subset.xml`,
//! so a clone anywhere tests it, extended with the neighbours' types transcribed from Graph's
//! documentation and marked as such).

use std::fmt::Write;
use std::sync::OnceLock;

use remediate_domain::collections::{Parent, ALL_COLLECTIONS};
use remediate_domain::model::{
    ComplexKind, Kind, ALL_ENTITIES, ALL_ENUMS, ENROLLMENT_SECRET, POLICY_STATE, RUN_RECORD,
};

use crate::respond::{ApiResponse, Body};

/// Complex types served (verbatim shapes of Microsoft's CSDL).
const COMPLEX_TYPES: &str = r#"      <ComplexType Name="deviceAndAppManagementAssignmentTarget" Abstract="true">
        <Property Name="deviceAndAppManagementAssignmentFilterId" Type="Edm.String" />
        <Property Name="deviceAndAppManagementAssignmentFilterType" Type="graph.deviceAndAppManagementAssignmentFilterType" Nullable="false" />
      </ComplexType>
      <ComplexType Name="allDevicesAssignmentTarget" BaseType="graph.deviceAndAppManagementAssignmentTarget" />
      <ComplexType Name="allLicensedUsersAssignmentTarget" BaseType="graph.deviceAndAppManagementAssignmentTarget" />
      <ComplexType Name="groupAssignmentTarget" BaseType="graph.deviceAndAppManagementAssignmentTarget">
        <Property Name="groupId" Type="Edm.String" />
      </ComplexType>
      <ComplexType Name="exclusionGroupAssignmentTarget" BaseType="graph.groupAssignmentTarget" />
      <ComplexType Name="deviceHealthScriptRunSchedule" Abstract="true">
        <Property Name="interval" Type="Edm.Int32" Nullable="false" />
      </ComplexType>
      <ComplexType Name="deviceHealthScriptHourlySchedule" BaseType="graph.deviceHealthScriptRunSchedule" />
      <ComplexType Name="deviceHealthScriptTimeSchedule" BaseType="graph.deviceHealthScriptRunSchedule" Abstract="true">
        <Property Name="time" Type="Edm.TimeOfDay" />
        <Property Name="useUtc" Type="Edm.Boolean" Nullable="false" />
      </ComplexType>
      <ComplexType Name="deviceHealthScriptDailySchedule" BaseType="graph.deviceHealthScriptTimeSchedule" />
      <ComplexType Name="deviceHealthScriptRunOnceSchedule" BaseType="graph.deviceHealthScriptTimeSchedule">
        <Property Name="date" Type="Edm.Date" />
      </ComplexType>
      <ComplexType Name="deviceHealthScriptParameter" Abstract="true">
        <Property Name="applyDefaultValueWhenNotAssigned" Type="Edm.Boolean" Nullable="false" />
        <Property Name="description" Type="Edm.String" />
        <Property Name="isRequired" Type="Edm.Boolean" Nullable="false" />
        <Property Name="name" Type="Edm.String" />
      </ComplexType>
      <ComplexType Name="deviceHealthScriptStringParameter" BaseType="graph.deviceHealthScriptParameter">
        <Property Name="defaultValue" Type="Edm.String" />
      </ComplexType>
      <ComplexType Name="deviceHealthScriptIntegerParameter" BaseType="graph.deviceHealthScriptParameter">
        <Property Name="defaultValue" Type="Edm.Int32" Nullable="false" />
      </ComplexType>
      <ComplexType Name="deviceHealthScriptBooleanParameter" BaseType="graph.deviceHealthScriptParameter">
        <Property Name="defaultValue" Type="Edm.Boolean" Nullable="false" />
      </ComplexType>
      <ComplexType Name="deviceHealthScriptRemediationHistory">
        <Property Name="historyData" Type="Collection(graph.deviceHealthScriptRemediationHistoryData)" />
        <Property Name="lastModifiedDateTime" Type="Edm.DateTimeOffset" />
      </ComplexType>
      <ComplexType Name="deviceHealthScriptRemediationHistoryData">
        <Property Name="date" Type="Edm.Date" Nullable="false" />
        <Property Name="detectFailedDeviceCount" Type="Edm.Int32" Nullable="false" />
        <Property Name="noIssueDeviceCount" Type="Edm.Int32" Nullable="false" />
        <Property Name="remediatedDeviceCount" Type="Edm.Int32" Nullable="false" />
      </ComplexType>
      <ComplexType Name="deviceHealthScriptRemediationSummary">
        <Property Name="remediatedDeviceCount" Type="Edm.Int32" />
        <Property Name="scriptCount" Type="Edm.Int32" />
      </ComplexType>
      <ComplexType Name="assignmentFilterValidationResult">
        <Property Name="isValidRule" Type="Edm.Boolean" Nullable="false" />
      </ComplexType>
"#;

const OPERATIONS: &str = r#"      <Action Name="assign" IsBound="true">
        <Parameter Name="bindingParameter" Type="graph.deviceHealthScript" />
        <Parameter Name="deviceHealthScriptAssignments" Type="Collection(graph.deviceHealthScriptAssignment)" />
      </Action>
      <Action Name="enableGlobalScripts" IsBound="true">
        <Parameter Name="bindingParameter" Type="Collection(graph.deviceHealthScript)" />
      </Action>
      <Action Name="getGlobalScriptHighestAvailableVersion" IsBound="true">
        <Parameter Name="bindingParameter" Type="graph.deviceHealthScript" />
        <ReturnType Type="Edm.String" Unicode="false" />
      </Action>
      <Action Name="initiateOnDemandProactiveRemediation" IsBound="true">
        <Parameter Name="bindingParameter" Type="graph.managedDevice" />
        <Parameter Name="scriptPolicyId" Type="Edm.String" Nullable="false" Unicode="false" />
      </Action>
      <Action Name="updateGlobalScript" IsBound="true">
        <Parameter Name="bindingParameter" Type="graph.deviceHealthScript" />
        <Parameter Name="version" Type="Edm.String" Unicode="false" />
        <ReturnType Type="Edm.String" Unicode="false" />
      </Action>
      <Action Name="validateFilter" IsBound="true">
        <Parameter Name="bindingParameter" Type="Collection(graph.deviceAndAppManagementAssignmentFilter)" />
        <Parameter Name="deviceAndAppManagementAssignmentFilter" Type="graph.deviceAndAppManagementAssignmentFilter" />
        <ReturnType Type="graph.assignmentFilterValidationResult" />
      </Action>
      <Function Name="areGlobalScriptsAvailable" IsBound="true">
        <Parameter Name="bindingParameter" Type="Collection(graph.deviceHealthScript)" />
        <ReturnType Type="graph.globalDeviceHealthScriptState" Nullable="false" />
      </Function>
      <Function Name="getRemediationHistory" IsBound="true">
        <Parameter Name="bindingParameter" Type="graph.deviceHealthScript" />
        <ReturnType Type="graph.deviceHealthScriptRemediationHistory" />
      </Function>
      <Function Name="getRemediationSummary" IsBound="true">
        <Parameter Name="bindingParameter" Type="Collection(graph.deviceHealthScript)" />
        <ReturnType Type="graph.deviceHealthScriptRemediationSummary" />
      </Function>
"#;

pub fn edm_type(kind: Kind) -> String {
    match kind {
        Kind::String => "Edm.String".into(),
        Kind::Binary => "Edm.Binary".into(),
        Kind::Boolean => "Edm.Boolean".into(),
        Kind::Int32 => "Edm.Int32".into(),
        Kind::Int64 => "Edm.Int64".into(),
        Kind::DateTimeOffset => "Edm.DateTimeOffset".into(),
        Kind::Enum(e) => format!("graph.{}", e.name),
        Kind::StringCollection => "Collection(Edm.String)".into(),
        Kind::Complex(ComplexKind::ScriptParameters) => {
            "Collection(graph.deviceHealthScriptParameter)".into()
        }
        Kind::Complex(ComplexKind::AssignmentTarget) => {
            "graph.deviceAndAppManagementAssignmentTarget".into()
        }
        Kind::Complex(ComplexKind::RunSchedule) => "graph.deviceHealthScriptRunSchedule".into(),
    }
}

/// Generate the CSDL document.
pub fn generate() -> String {
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    x.push_str(
        "<edmx:Edmx Version=\"4.0\" xmlns:edmx=\"http://docs.oasis-open.org/odata/ns/edmx\">\n",
    );
    x.push_str("  <edmx:DataServices>\n");
    x.push_str("    <Schema Namespace=\"microsoft.graph\" Alias=\"graph\" xmlns=\"http://docs.oasis-open.org/odata/ns/edm\">\n");
    for e in ALL_ENUMS {
        let _ = writeln!(x, "      <EnumType Name=\"{}\">", e.name);
        for (name, value) in e.members {
            let _ = writeln!(x, "        <Member Name=\"{name}\" Value=\"{value}\" />");
        }
        x.push_str("      </EnumType>\n");
    }
    x.push_str(COMPLEX_TYPES);
    x.push_str("      <EntityType Name=\"entity\" Abstract=\"true\">\n        <Key>\n          <PropertyRef Name=\"id\" />\n        </Key>\n        <Property Name=\"id\" Type=\"Edm.String\" Nullable=\"false\" />\n      </EntityType>\n");
    // Base types Graph declares for collections of references (`directoryObject`).
    let mut bases: Vec<&str> = ALL_COLLECTIONS
        .iter()
        .filter_map(|c| c.declared_type)
        .collect();
    bases.sort_unstable();
    bases.dedup();
    for base in &bases {
        let _ = writeln!(
            x,
            "      <EntityType Name=\"{base}\" BaseType=\"graph.entity\" Abstract=\"true\" />"
        );
    }
    for entity in ALL_ENTITIES {
        let composite = std::ptr::eq(entity, &POLICY_STATE);
        if composite {
            let _ = writeln!(x, "      <EntityType Name=\"{}\">", entity.name);
            x.push_str("        <Key>\n          <PropertyRef Name=\"deviceId\" />\n          <PropertyRef Name=\"id\" />\n          <PropertyRef Name=\"policyId\" />\n        </Key>\n");
        } else {
            let _ = writeln!(
                x,
                "      <EntityType Name=\"{}\" BaseType=\"graph.{}\">",
                entity.name,
                base_type(entity)
            );
        }
        if std::ptr::eq(entity, &RUN_RECORD) {
            x.push_str("        <Annotation Term=\"Org.OData.Core.V1.Description\" String=\"remediate extension: an immutable record of a run-state change (SPEC 3.2 History).\" />\n");
        }
        if std::ptr::eq(entity, &ENROLLMENT_SECRET) {
            x.push_str("        <Annotation Term=\"Org.OData.Core.V1.Description\" String=\"remediate extension: a secret device agents enroll with (SPEC 7); the secret is shown once, at creation.\" />\n");
        }
        for p in entity
            .properties
            .iter()
            .filter(|p| composite || p.name != "id")
        {
            let nullable = if p.nullable {
                ""
            } else {
                " Nullable=\"false\""
            };
            let _ = writeln!(
                x,
                "        <Property Name=\"{}\" Type=\"{}\"{nullable} />",
                p.name,
                edm_type(p.kind)
            );
        }
        for nav in entity.navigations {
            // A collection of references declares Graph's type of its items.
            let declared = ALL_COLLECTIONS.iter().find_map(|c| match c.parent {
                Parent::Item(parent)
                    if std::ptr::eq(parent.entity, entity) && c.segment == nav.name =>
                {
                    c.declared_type
                }
                _ => None,
            });
            let target = format!("graph.{}", declared.unwrap_or(nav.target.name));
            let ty = if nav.many {
                format!("Collection({target})")
            } else {
                target
            };
            let contains = if nav.contained {
                " ContainsTarget=\"true\""
            } else {
                ""
            };
            let _ = writeln!(
                x,
                "        <NavigationProperty Name=\"{}\" Type=\"{ty}\"{contains} />",
                nav.name
            );
        }
        x.push_str("      </EntityType>\n");
    }
    x.push_str("      <EntityType Name=\"deviceManagement\" BaseType=\"graph.entity\">\n");
    for collection in ALL_COLLECTIONS {
        if matches!(collection.parent, Parent::Root("deviceManagement")) {
            let _ = writeln!(
                x,
                "        <NavigationProperty Name=\"{}\" Type=\"Collection(graph.{})\" ContainsTarget=\"true\" />",
                collection.segment, collection.entity.name
            );
        }
    }
    // Singletons under deviceManagement holding collections (`reports` → `exportJobs`).
    let mut holders: Vec<&str> = ALL_COLLECTIONS
        .iter()
        .filter_map(|c| match c.parent {
            Parent::Root(path) => path.strip_prefix("deviceManagement/"),
            Parent::Item(_) => None,
        })
        .collect();
    holders.dedup();
    for holder in &holders {
        let _ = writeln!(
            x,
            "        <NavigationProperty Name=\"{holder}\" Type=\"graph.{}\" ContainsTarget=\"true\" />",
            holder_type(holder)
        );
    }
    x.push_str("      </EntityType>\n");
    for holder in &holders {
        let _ = writeln!(
            x,
            "      <EntityType Name=\"{}\" BaseType=\"graph.entity\">",
            holder_type(holder)
        );
        for collection in ALL_COLLECTIONS {
            if matches!(collection.parent, Parent::Root(path) if path.strip_prefix("deviceManagement/") == Some(holder))
            {
                let _ = writeln!(
                    x,
                    "        <NavigationProperty Name=\"{}\" Type=\"Collection(graph.{})\" ContainsTarget=\"true\" />",
                    collection.segment, collection.entity.name
                );
            }
        }
        x.push_str("      </EntityType>\n");
    }
    x.push_str(OPERATIONS);
    x.push_str("      <EntityContainer Name=\"GraphService\">\n");
    for collection in ALL_COLLECTIONS {
        if matches!(collection.parent, Parent::Root("")) {
            let _ = writeln!(
                x,
                "        <EntitySet Name=\"{}\" EntityType=\"graph.{}\" />",
                collection.segment, collection.entity.name
            );
        }
    }
    x.push_str("        <Singleton Name=\"deviceManagement\" Type=\"graph.deviceManagement\" />\n      </EntityContainer>\n");
    x.push_str("    </Schema>\n  </edmx:DataServices>\n</edmx:Edmx>\n");
    x
}

/// Graph's type of a singleton under `deviceManagement`: `reports` → `deviceManagementReports`.
fn holder_type(holder: &str) -> String {
    let mut chars = holder.chars();
    let first = chars.next().map(|c| c.to_ascii_uppercase());
    format!(
        "deviceManagement{}{}",
        first.map(String::from).unwrap_or_default(),
        chars.as_str()
    )
}

/// The base type of an entity: `directoryObject` for the items of collections Graph declares
/// as `directoryObject`s (groups, devices), else `entity`.
fn base_type(entity: &remediate_domain::model::EntityType) -> &'static str {
    ALL_COLLECTIONS
        .iter()
        .filter(|c| std::ptr::eq(c.entity, entity))
        .find_map(|c| c.declared_type)
        .unwrap_or("entity")
}

pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(generate)
}

pub fn response() -> ApiResponse {
    ApiResponse {
        status: http::StatusCode::OK,
        headers: Vec::new(),
        body: Body::Xml(document().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = include_str!("../../../docs/metadata.xml");

    #[test]
    fn the_committed_metadata_is_what_the_server_generates() {
        let fresh = generate();
        if std::env::var("REMEDIATE_BLESS").is_ok() {
            std::fs::write(
                concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metadata.xml"),
                &fresh,
            )
            .unwrap();
            return;
        }
        assert!(
            fresh == COMMITTED,
            "docs/metadata.xml is stale: regenerate it with `REMEDIATE_BLESS=1 cargo test -p remediate-api metadata`"
        );
    }

    /// Every property of a Graph type we serve has the type and nullability Microsoft's CSDL gives it.
    #[test]
    fn served_types_match_microsofts_csdl() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/csdl-subset.xml");
        let csdl = std::fs::read_to_string(path).expect("crates/api/fixtures/csdl-subset.xml");
        let ours = generate();
        for entity in ALL_ENTITIES
            .iter()
            .filter(|e| !std::ptr::eq(**e, &RUN_RECORD) && !std::ptr::eq(**e, &ENROLLMENT_SECRET))
        {
            let block = |doc: &str| -> String {
                let start = doc
                    .find(&format!("<EntityType Name=\"{}\"", entity.name))
                    .expect(entity.name);
                let end = doc[start..].find("</EntityType>").unwrap() + start;
                doc[start..end].to_owned()
            };
            let (theirs, mine) = (block(&csdl), block(&ours));
            for line in mine
                .lines()
                .filter(|l| l.trim_start().starts_with("<Property "))
            {
                let element = line.trim();
                assert!(
                    theirs.contains(element),
                    "{}: our `{element}` is not in Microsoft's CSDL for this type",
                    entity.name
                );
            }
        }
        for e in ALL_ENUMS
            .iter()
            .filter(|e| csdl.contains(&format!("<EnumType Name=\"{}\"", e.name)))
        {
            for (name, value) in e.members {
                assert!(
                    csdl.contains(&format!("<Member Name=\"{name}\" Value=\"{value}\" />")),
                    "{}.{name}",
                    e.name
                );
            }
        }
    }
}
