import { createHash } from 'node:crypto';
import type { Ref } from '@wegent/core';
import type { ResolvedMember, ResolvedSkill } from '@wegent/runtime';
import { ConflictError, NotFoundError, ValidationError, invalidMessage } from '../errors.js';
import type { Actor, ResourceService } from '../resources/service.js';
import { PUBLIC_OWNER, type ResourceRecord } from '../resources/store.js';
import { ARCHIVE_LIMITS, ArchiveProblem, inspectSkillArchive, readPackageFiles, type PackageFile } from './archive.js';
import { parseSkillMd } from './skill-md.js';
import { skillPackageStore } from './store.js';

type Obj = Record<string, unknown>;

/** Shell types a Skill without `bindShells` is usable by (resources.md §15.1). */
export const DEFAULT_BIND_SHELLS = ['Chat', 'Code', 'ClaudeCode'];

/** The result of an upload: the Skill document and whether the upload created it. */
export interface UploadResult {
  created: boolean;
  /** Hex sha256 of the package now stored. */
  sha256: string;
  document: Obj;
  warnings: string[];
}

/** The strong ETag of a package: its sha256 in hex, quoted (api.md §4.12). */
export const packageEtag = (sha256: string) => `"${sha256}"`;

function problem(kind: string, name: string, field: string, message: string): ValidationError {
  const causes = [{ field, reason: 'FieldValueInvalid', message }];
  return new ValidationError(invalidMessage(kind, name, causes), causes, { kind, name });
}

/** Skill packages (api.md §4.12): upload, download, file listing, and the skills of a run. */
export class SkillService {
  constructor(private readonly resources: ResourceService) {}

  private get db() {
    return this.resources.store.db;
  }

  /**
   * Stores a package and creates or updates its Skill from SKILL.md, in one transaction. `ifMatch` is the
   * client's `If-Match` header: it must equal the current package's ETag (or be `*` with a package).
   */
  async upload(actor: Actor, namespace: string, name: string, archive: Buffer, opts: { public: boolean; dryRun?: boolean; ifMatch?: string }): Promise<UploadResult> {
    let spec: Obj;
    let files: PackageFile[];
    let root: string;
    try {
      const inspected = await inspectSkillArchive(archive, ARCHIVE_LIMITS);
      files = inspected.files;
      root = inspected.root;
      spec = parseSkillMd(inspected.skillMd);
    } catch (e) {
      if (e instanceof ArchiveProblem) throw problem('Skill', name, e.message.startsWith('SKILL.md') ? 'package:SKILL.md' : 'package', e.message);
      throw e;
    }
    const sha256 = createHash('sha256').update(archive).digest('hex');
    const ownerId = opts.public ? PUBLIC_OWNER : actor.userId;
    const [existing] = await this.resources.store.findLive(this.db, 'Skill', namespace, name, [ownerId]);
    const current = existing ? await skillPackageStore.find(this.db, existing.uid) : undefined;
    const checkPrecondition = (pkg: { sha256: string } | undefined) => {
      if (opts.ifMatch === undefined) return;
      const matches = pkg !== undefined && (opts.ifMatch.trim() === '*' || opts.ifMatch.split(',').some((tag) => tag.trim() === packageEtag(pkg.sha256)));
      if (!matches) throw new ConflictError(`the package of Skill '${name}' has changed (If-Match does not equal its ETag); download it again`, { kind: 'Skill', name });
    };
    checkPrecondition(current);
    if (existing && current?.sha256 === sha256) {
      return { created: false, sha256, document: this.resources.toApi(existing), warnings: [] };
    }

    const metadata: Obj = { name, namespace };
    if (existing) {
      metadata.uid = existing.uid;
      metadata.labels = existing.labels;
      metadata.annotations = existing.annotations;
      if (existing.displayName !== undefined) metadata.displayName = existing.displayName;
    }
    const document = { apiVersion: 'agent.wecode.io/v1', kind: 'Skill', metadata, spec };
    const fileCount = files.length;
    const writeOpts = {
      public: opts.public,
      dryRun: opts.dryRun ?? false,
      routeKind: 'Skill' as const,
      routeNamespace: namespace,
      statusFields: { package: true, fileSize: archive.length, fileHash: `sha256:${sha256}`, fileCount },
      contentChanged: true,
      inTransaction: async (trx: Parameters<typeof skillPackageStore.put>[0], record: ResourceRecord) => {
        // Checked again inside the write: a concurrent upload between the first check and here loses.
        if (existing) checkPrecondition(await skillPackageStore.find(trx, record.uid));
        await skillPackageStore.put(trx, { skillUid: record.uid, sha256, size: archive.length, root, files, createdAt: new Date().toISOString() }, archive);
      },
    };
    const item = existing ? await this.resources.replace(actor, document, { ...writeOpts, pathName: name }) : await this.resources.create(actor, document, writeOpts);
    return { created: !existing, sha256, document: item.object!, warnings: item.warnings };
  }

  /** The Skill the caller sees (own, else public; `scope` narrows) and its package, or 404. */
  async visiblePackage(actor: Actor, namespace: string, name: string, scope?: 'own' | 'public') {
    const record = await this.resources.findVisible(actor, 'Skill', namespace, name, scope);
    if (!record) throw new NotFoundError(`Skill '${name}' not found in namespace '${namespace}'`, { kind: 'Skill', name });
    const pkg = await skillPackageStore.find(this.db, record.uid);
    if (!pkg) throw new NotFoundError(`Skill '${name}' has no package`, { kind: 'Skill', name });
    return { record, pkg };
  }

  /** The archive bytes as uploaded, with their sha256. */
  async download(actor: Actor, namespace: string, name: string, scope?: 'own' | 'public'): Promise<{ data: Buffer; sha256: string }> {
    const { record, pkg } = await this.visiblePackage(actor, namespace, name, scope);
    const data = await skillPackageStore.data(this.db, record.uid);
    if (!data) throw new NotFoundError(`Skill '${name}' has no package`, { kind: 'Skill', name });
    return { data, sha256: pkg.sha256 };
  }

  /** The files of a package, paths relative to the folder that holds SKILL.md. */
  async files(actor: Actor, namespace: string, name: string, scope?: 'own' | 'public'): Promise<PackageFile[]> {
    return (await this.visiblePackage(actor, namespace, name, scope)).pkg.files;
  }

  /**
   * The files of a Skill's package with their bytes, for copying into a sandbox at
   * `/workspace/.skills/<name>/` (runtime.md §8; the run host's `loadSkillPackage`).
   */
  async packageFiles(skillUid: string): Promise<Array<{ path: string; data: Buffer }>> {
    const pkg = await skillPackageStore.find(this.db, skillUid);
    const data = pkg ? await skillPackageStore.data(this.db, skillUid) : undefined;
    return pkg && data ? readPackageFiles(data, pkg.root) : [];
  }

  /**
   * The skills of a member's Ghost for a run (runtime.md §2 step 3, §8): each name resolved like a
   * reference from the Ghost (own, then public), kept when its `bindShells` include the Shell type.
   */
  async resolveForGhost(ghost: ResourceRecord, ghostSpec: Obj, shellType: string): Promise<Pick<ResolvedMember['ghost'], 'skills' | 'preloadSkills' | 'skillsLeftOut'>> {
    const names = Array.isArray(ghostSpec.skills) ? ghostSpec.skills.filter((s): s is string => typeof s === 'string') : [];
    if (!names.length) return {};
    const owner = ghost.ownerId === PUBLIC_OWNER ? null : ghost.ownerId;
    const skills: ResolvedSkill[] = [];
    const skillsLeftOut: NonNullable<ResolvedMember['ghost']['skillsLeftOut']> = [];
    for (const name of names) {
      const hit = await this.resources.resolveRef(owner, 'Skill', { name } as Ref, ghost.namespace);
      if (!hit) {
        skillsLeftOut.push({ name, reason: 'notFound' });
        continue;
      }
      const bound = Array.isArray(hit.spec.bindShells) ? (hit.spec.bindShells as string[]) : DEFAULT_BIND_SHELLS;
      if (!bound.some((t) => t.toLowerCase() === shellType.toLowerCase())) {
        skillsLeftOut.push({ name, reason: 'notBound' });
        continue;
      }
      const r = hit.record;
      const fileHash = typeof r.status.fileHash === 'string' ? r.status.fileHash : undefined;
      skills.push({
        uid: r.uid,
        generation: r.generation,
        name: r.name,
        namespace: r.namespace,
        scope: hit.scope,
        description: String(hit.spec.description ?? ''),
        body: typeof hit.spec.prompt === 'string' ? hit.spec.prompt : '',
        ...(fileHash ? { packageHash: fileHash } : {}),
      });
    }
    const preload = Array.isArray(ghostSpec.preload_skills) ? ghostSpec.preload_skills.filter((s): s is string => typeof s === 'string') : [];
    return { skills, ...(preload.length ? { preloadSkills: preload } : {}), ...(skillsLeftOut.length ? { skillsLeftOut } : {}) };
  }
}
