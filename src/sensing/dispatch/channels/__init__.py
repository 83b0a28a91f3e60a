"""Senders for the contacts of the directory: webhook, Apprise and the MQTT dispatch topic."""

from sensing.dispatch.channels.apprise_channel import AppriseChannel
from sensing.dispatch.channels.base import Channel, SendOutcome
from sensing.dispatch.channels.mqtt import MqttChannel, Publish
from sensing.dispatch.channels.webhook import WebhookChannel

__all__ = ["AppriseChannel", "Channel", "MqttChannel", "Publish", "SendOutcome",
           "WebhookChannel"]
