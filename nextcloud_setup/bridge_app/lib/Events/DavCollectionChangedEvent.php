<?php

declare(strict_types=1);

namespace OCA\DavPushBridge\Events;

use OCP\EventDispatcher\Event;
use OCP\EventDispatcher\IWebhookCompatibleEvent;

/**
 * A CalDAV/CardDAV collection (or an object in it) changed.
 *
 * The payload is the compact array described in EVENT.md: ids, URIs, principals and a
 * sync-token, never an ICS or vCard body, so the webhook job stays far below Nextcloud's
 * 4000-character job-argument limit. webhook_listeners appends "class" when it sends it.
 */
class DavCollectionChangedEvent extends Event implements IWebhookCompatibleEvent {
	/**
	 * @param array<string, mixed> $data the compact payload (see EVENT.md)
	 */
	public function __construct(
		private array $data,
	) {
		parent::__construct();
	}

	/** @return array<string, mixed> */
	public function getData(): array {
		return $this->data;
	}

	public function getWebhookSerializable(): array {
		return $this->data;
	}
}
