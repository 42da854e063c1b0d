import type { FastifyError, FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import { z } from 'zod';
import { Name, ResourceDocument, StatusBody } from '@wegent/core';
import type { App, AppContext } from '../app.js';
import { ApiError, BadRequestError, ForbiddenError, NotFoundError, PayloadTooLargeError, UnsupportedMediaTypeError, ValidationError, invalidMessage } from '../errors.js';
import { setWarnings } from '../resources/routes.js';
import type { Actor } from '../resources/service.js';
import { documentOnly } from '../http/plumbing.js';
import { packageEtag, SkillService } from './service.js';

const ZIP_TYPES = ['application/zip', 'application/x-zip-compressed'];
const errors = { 400: StatusBody, 401: StatusBody, 403: StatusBody, 404: StatusBody, 409: StatusBody, 413: StatusBody, 415: StatusBody, 422: StatusBody };

function actorOf(req: FastifyRequest): Actor {
  const p = req.principal!;
  return { userId: p.userId, isAdmin: p.role === 'admin' };
}

function checkName(value: string, what: string): void {
  if (!Name.safeParse(value).success) throw new NotFoundError(`${what} '${value.slice(0, 80)}' not found`);
}

function mediaType(req: FastifyRequest): string {
  return (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

/** The uploaded archive: the raw body, or the `file` field of a multipart form. */
async function archiveOf(req: FastifyRequest, name: string, tooLarge: () => ApiError): Promise<Buffer> {
  if (mediaType(req) !== 'multipart/form-data') return (req.body as Buffer | undefined) ?? Buffer.alloc(0);
  let archive: Buffer | undefined;
  try {
    for await (const part of req.parts()) {
      if (part.type !== 'file') continue;
      if (part.fieldname === 'file' && archive === undefined) archive = await part.toBuffer();
      else part.file.resume();
    }
  } catch (e) {
    if (e instanceof ApiError) throw e;
    if ((e as FastifyError).code === 'FST_REQ_FILE_TOO_LARGE') throw tooLarge();
    if ((e as FastifyError).statusCode === 413) throw new PayloadTooLargeError('the multipart body has too many parts, files or fields');
    throw new BadRequestError(`malformed multipart body: ${((e as Error).message ?? '').split('\n')[0]}`);
  }
  if (!archive) {
    const causes = [{ field: 'file', reason: 'FieldValueRequired', message: "the multipart body has no 'file' field" }];
    throw new ValidationError(invalidMessage('Skill', name, causes), causes, { kind: 'Skill', name });
  }
  return archive;
}

/** Skill package routes (api.md §4.12); the Skill document itself is served by the resource routes. */
export async function registerSkillRoutes(app: App, ctx: AppContext): Promise<SkillService> {
  const skills = new SkillService(ctx.resources);
  const tooLarge = () => new PayloadTooLargeError(`the skill package is larger than ${ctx.config.skillMaxBytes} bytes (WEGENT_SKILL_MAX_BYTES)`);
  // Its own plugin scope: the zip and multipart parsers exist for these routes only.
  await app.register(async (scope) => {
    await scope.register(multipart, { limits: { fileSize: ctx.config.skillMaxBytes, files: 5, fields: 20, parts: 30, fieldSize: 64 * 1024 } });
    scope.addContentTypeParser(ZIP_TYPES, { parseAs: 'buffer', bodyLimit: ctx.config.skillMaxBytes }, (_req, body, done) => done(null, body));
    scope.setErrorHandler((err: FastifyError) => {
      // The package's own limit, named (the framework's message does not say which limit).
      if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || err.code === 'FST_REQ_FILE_TOO_LARGE') throw tooLarge();
      throw err;
    });

    const params = z.object({ ns: z.string(), name: z.string() });
    const tags = ['skills'];
    const typed = scope.withTypeProvider<import('fastify-type-provider-zod').ZodTypeProvider>();

    typed.put(
      '/api/v1/namespaces/:ns/skills/:name/package',
      {
        config: { auth: 'user' },
        // The media type is checked before the body is read, so an oversized body of another type gets 415.
        preParsing: async (req) => {
          const type = mediaType(req);
          if (!ZIP_TYPES.includes(type) && type !== 'multipart/form-data') {
            throw new UnsupportedMediaTypeError(`a skill package is uploaded as application/zip or multipart/form-data (field 'file'), not '${type || '(none)'}'`);
          }
        },
        schema: {
          tags,
          summary: 'Upload a skill package (ZIP with SKILL.md); creates or updates the Skill',
          consumes: [...ZIP_TYPES, 'multipart/form-data'],
          body: documentOnly(z.any().describe("the ZIP archive (≤ 10 MiB by default), raw or as the multipart field 'file'")),
          params,
          querystring: z.object({ scope: z.enum(['public', 'own']).optional(), dryRun: z.enum(['true', 'false', 'All', 'all']).optional().describe('true or All: check the package, store nothing') }),
          response: { 200: ResourceDocument, 201: ResourceDocument, ...errors },
        },
      },
      async (req, reply) => {
        checkName(req.params.ns, 'namespace');
        checkName(req.params.name, 'Skill');
        const isPublic = req.query.scope === 'public';
        if (isPublic && req.principal!.role !== 'admin') throw new ForbiddenError('only admins can write public resources (scope=public)');
        const archive = await archiveOf(req, req.params.name, tooLarge);
        const ifMatch = req.headers['if-match'];
        const result = await skills.upload(actorOf(req), req.params.ns, req.params.name, archive, { public: isPublic, dryRun: ['true', 'All', 'all'].includes(req.query.dryRun ?? ''), ifMatch: typeof ifMatch === 'string' ? ifMatch : undefined });
        setWarnings(reply, result.warnings);
        reply.header('ETag', packageEtag(result.sha256));
        return reply.code(result.created ? 201 : 200).send(result.document as ResourceDocument);
      },
    );

    typed.get(
      '/api/v1/namespaces/:ns/skills/:name/package',
      { config: { auth: 'user' }, schema: { tags, summary: 'Download a skill package, byte for byte', params, querystring: z.object({ scope: z.enum(['own', 'public']).optional() }), response: { 200: z.any().describe('application/zip'), ...errors } } },
      async (req, reply) => {
        checkName(req.params.ns, 'namespace');
        checkName(req.params.name, 'Skill');
        const { data, sha256 } = await skills.download(actorOf(req), req.params.ns, req.params.name, req.query.scope);
        return reply
          .type('application/zip')
          .header('Content-Disposition', `attachment; filename="${req.params.name}.zip"`)
          .header('ETag', packageEtag(sha256))
          .send(data);
      },
    );

    typed.get(
      '/api/v1/namespaces/:ns/skills/:name/files',
      { config: { auth: 'user' }, schema: { tags, summary: 'Files of a skill package', params, querystring: z.object({ scope: z.enum(['own', 'public']).optional() }), response: { 200: z.object({ items: z.array(z.object({ path: z.string(), size: z.number() })) }), ...errors } } },
      async (req) => {
        checkName(req.params.ns, 'namespace');
        checkName(req.params.name, 'Skill');
        return { items: await skills.files(actorOf(req), req.params.ns, req.params.name, req.query.scope) };
      },
    );
  });
  return skills;
}
