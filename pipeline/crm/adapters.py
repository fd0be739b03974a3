"""Payload adapters: the same lead in the shapes dealer CRMs take.

``json`` is the lead document itself (``lead.schema.json``). ``salesforce`` is a Composite API
request that upserts a Lead by our ``lead_id`` (external-id field ``Fleetcare_Lead_Id__c``)
and, when a slot was proposed, creates a ServiceAppointment whose parent is that Lead, so a
redelivery updates instead of duplicating. ``adf`` is ADF XML 1.0 (Auto-lead Data Format), the
format dealer management systems import leads in: a ``prospect`` with vehicle, customer and
vendor (the service centre); the vehicle's VIN goes in ``<vin>`` and fleetcare's vehicle id
in the vehicle's ``<id source="fleetcare">``. Every shape leads with the lead's ``headline``
and gives the proposed window in the centre's own time zone. The webhook headers and
signature are the same for all three: the signature covers the bytes actually sent.

Salesforce fields ending in ``__c`` are custom fields a CRM admin creates once; the others are
standard Lead and ServiceAppointment fields.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any, Final

import orjson

SALESFORCE_API: Final = "/services/data/v60.0"
FORMATS: Final = ("json", "salesforce", "adf")
_CONTENT_TYPES: Final = {"json": "application/json", "salesforce": "application/json",
                         "adf": "application/xml"}
_RATING: Final = {"critical": "Hot", "high": "Hot", "medium": "Warm", "low": "Cold"}


def render(doc: dict[str, Any], payload_format: str) -> tuple[bytes, str]:
    """The body and content type to send for ``doc`` in ``payload_format``.

    Raises:
        ValueError: the format is not one of :data:`FORMATS`.
    """
    renderers: dict[str, Callable[[dict[str, Any]], bytes]] = {
        "json": lambda d: orjson.dumps(d),
        "salesforce": lambda d: orjson.dumps(salesforce_composite(d)),
        "adf": lambda d: adf_xml(d).encode(),
    }
    if payload_format not in renderers:
        raise ValueError(f"unknown payload format {payload_format!r}; use one of {FORMATS}")
    return renderers[payload_format](doc), _CONTENT_TYPES[payload_format]


def _names(doc: dict[str, Any]) -> tuple[str, str]:
    full = ((doc.get("customer") or {}).get("name") or "").strip()
    first, _, last = full.rpartition(" ")
    return (first, last) if first else ("", full or "Unknown")


def _summary(doc: dict[str, Any]) -> str:
    """The lead in a few lines a person reads: headline, confidence, work and payer, slot."""
    codes = ", ".join(f"{c['code']} {c['description']} ({c['severity']})"
                      for c in doc["evidence"]["fault_codes"])
    confidence = (doc.get("confidence") or {}).get("text")
    horizon = f"{doc['horizon_days']} days"
    if confidence and horizon not in confidence:
        confidence = f"{confidence} ({horizon})"
    work = (doc.get("recommended_work") or {}).get("description", "")
    payer = doc.get("payer")
    slot = doc.get("proposed_appointment") or {}
    parts = [doc.get("headline") or f"{doc['component']} ({doc['severity']})",
             "ROADSIDE ASSISTANCE" if doc["roadside_assistance"] else "",
             f"confidence: {confidence}" if confidence else "",
             f"fault codes: {codes}" if codes else "",
             f"work: {work}" + (f", paid by {payer} ({doc.get('payer_basis')})" if payer else "")
             if work else "",
             f"proposed: {slot['text']}" if slot.get("text") else "",
             f"evidence: {doc['evidence_url']}" if doc.get("evidence_url") else ""]
    return "\n".join(p for p in parts if p)


def salesforce_lead(doc: dict[str, Any]) -> dict[str, Any]:
    """Lead fields (standard ones plus fleetcare's custom ``__c`` fields)."""
    first, last = _names(doc)
    customer, work = doc.get("customer") or {}, doc.get("recommended_work") or {}
    return {
        "FirstName": first, "LastName": last, "Email": customer.get("email"),
        "Phone": customer.get("phone"), "Company": (doc.get("centre") or {}).get("name")
        or "Private customer", "LeadSource": "Connected Vehicle", "Status": "Open - Not Contacted",
        "Rating": _RATING[doc["severity"]], "Description": _summary(doc),
        "Fleetcare_Lead_Id__c": doc["lead_id"], "Revision__c": doc["revision"],
        "Vehicle_Id__c": doc["vehicle"]["vehicle_id"], "Component__c": doc["component"],
        "Severity__c": doc["severity"], "Failure_Probability__c": doc.get("probability"),
        "Confidence_Percent__c": (doc.get("confidence") or {}).get("percent"),
        "Horizon_Days__c": doc["horizon_days"], "VIN__c": doc["vehicle"].get("vin"),
        "Payer__c": doc.get("payer"), "Evidence_Url__c": doc.get("evidence_url"),
        "Roadside_Assistance__c": doc["roadside_assistance"],
        "Estimated_Cost__c": work.get("total_eur"), "Campaign__c": doc.get("campaign"),
    }


def salesforce_service_appointment(doc: dict[str, Any], parent: str) -> dict[str, Any] | None:
    """ServiceAppointment fields for the proposed slot (None when nothing was proposed)."""
    slot = doc.get("proposed_appointment")
    if not slot:
        return None
    work = doc.get("recommended_work") or {}
    return {
        "ParentRecordId": parent,
        "Subject": (doc.get("headline") or f"{doc['component']} service")[:255],
        "Description": _summary(doc), "EarliestStartTime": slot["window_start"],
        "DueDate": slot["window_end"], "ArrivalWindowStartTime": slot["window_start"],
        "ArrivalWindowEndTime": slot["window_end"], "Duration": slot.get("labour_hours")
        or work.get("labour_hours"), "DurationType": "Hours", "Status": "None",
        "Fleetcare_Lead_Id__c": doc["lead_id"], "Bay__c": slot.get("bay"),
    }


def salesforce_composite(doc: dict[str, Any]) -> dict[str, Any]:
    """A Composite API request: upsert the Lead, then create its ServiceAppointment."""
    requests: list[dict[str, Any]] = [{
        "method": "PATCH", "referenceId": "lead", "body": salesforce_lead(doc),
        "url": f"{SALESFORCE_API}/sobjects/Lead/Fleetcare_Lead_Id__c/{doc['lead_id']}",
    }]
    appointment = salesforce_service_appointment(doc, "@{lead.id}")
    if appointment is not None:
        requests.append({"method": "POST", "referenceId": "appointment", "body": appointment,
                         "url": f"{SALESFORCE_API}/sobjects/ServiceAppointment"})
    return {"allOrNone": True, "compositeRequest": requests}


def adf_xml(doc: dict[str, Any]) -> str:
    """The lead as an ADF 1.0 document (``<?adf version="1.0"?>``, one prospect)."""
    prospect = ET.Element("prospect", status="new")
    ET.SubElement(prospect, "id", sequence=str(doc["revision"]),
                  source="fleetcare").text = doc["lead_id"]
    ET.SubElement(prospect, "requestdate").text = doc["issued_at"]
    vehicle = ET.SubElement(prospect, "vehicle", interest="service", status="used")
    car = doc["vehicle"]
    ET.SubElement(vehicle, "id", source="fleetcare").text = car["vehicle_id"]
    if car.get("model_year") is not None:
        ET.SubElement(vehicle, "year").text = str(car["model_year"])
    ET.SubElement(vehicle, "model").text = car.get("model") or "unknown"
    if car.get("vin"):
        ET.SubElement(vehicle, "vin").text = car["vin"]
    ET.SubElement(vehicle, "comments").text = _summary(doc)
    customer = ET.SubElement(prospect, "customer")
    contact = ET.SubElement(customer, "contact", primarycontact="1")
    first, last = _names(doc)
    ET.SubElement(contact, "name", part="first").text = first
    ET.SubElement(contact, "name", part="last").text = last
    person = doc.get("customer") or {}
    if person.get("email"):
        ET.SubElement(contact, "email").text = person["email"]
    if person.get("phone"):
        ET.SubElement(contact, "phone", type="voice").text = person["phone"]
    slot = doc.get("proposed_appointment")
    when = (f"proposed appointment {slot.get('text') or slot['window_start']}" if slot
            else "contact " + doc["contact"])
    ET.SubElement(customer, "comments").text = when
    centre = doc.get("centre") or {}
    vendor = ET.SubElement(prospect, "vendor")
    ET.SubElement(vendor, "id", source="fleetcare").text = centre.get("centre_id", "")
    ET.SubElement(vendor, "vendorname").text = centre.get("name", "")
    provider = ET.SubElement(prospect, "provider")
    ET.SubElement(provider, "name", part="full").text = "fleetcare"
    adf = ET.Element("adf")
    adf.append(prospect)
    body = ET.tostring(adf, encoding="unicode")
    return f'<?xml version="1.0"?>\n<?adf version="1.0"?>\n{body}\n'
